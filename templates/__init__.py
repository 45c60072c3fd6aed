"""Package data: see digest/resources.py."""
