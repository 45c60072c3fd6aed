"""Benchmarks: ``python -m benchmarks.send`` measures sending against a loopback SMTP sink."""
