"""SHA-256 through ``cryptography`` (already loaded for signatures).

Using it instead of ``hashlib`` keeps a second copy of OpenSSL out of the agent's
memory (about 4 MB of RSS on a device where every MB counts).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes


class Sha256:
    """The hashlib-style subset edgekit uses: ``update`` and ``hexdigest``."""

    def __init__(self, data: bytes = b"") -> None:
        self._hash = hashes.Hash(hashes.SHA256())
        if data:
            self._hash.update(data)

    def update(self, data: bytes) -> None:
        """Feed more bytes."""
        self._hash.update(data)

    def hexdigest(self) -> str:
        """The digest as 64 lowercase hex digits (finalizes the hash)."""
        return self._hash.finalize().hex()
