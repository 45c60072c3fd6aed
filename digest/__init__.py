"""digest: topic digests by email.

articles in -> selection per member -> render -> send -> delivery ledger.
"""

__version__ = "0.1.0"
