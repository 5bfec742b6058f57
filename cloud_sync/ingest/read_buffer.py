"""One large socket read serving paho's many small ones.

paho reads an MQTT packet in pieces: its first byte, each byte of the remaining length,
then the rest; four or more ``recv`` system calls for every PUBLISH. At thousands of
messages a second those calls were a third of ingest's receive thread (py-spy on this
project's ingest benchmark). ``ReadBuffer`` wraps the client's own ``_sock_recv`` (so
TLS and paho's error handling stay as they are), asks it for up to ``SIZE`` bytes at
once and hands out the pieces from memory. ``pending`` says bytes are buffered, so the
loop must not wait in ``select()`` for the socket (the same reason paho checks an SSL
socket's ``pending()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SIZE = 256 << 10


class ReadBuffer:
    """Reads through ``recv`` in ``SIZE`` chunks; ``recv(n)`` returns at most ``n`` bytes."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0

    def pending(self) -> bool:
        """True while bytes read from the socket are waiting here."""
        return self._pos < len(self._data)

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: from the buffer, else from one large socket read
        (whose BlockingIOError, or b"" at end of stream, passes through)."""
        if self._pos >= len(self._data):
            data = self._recv(SIZE)
            if not data:
                return data
            self._data, self._pos = data, 0
        end = self._pos + bufsize
        chunk = self._data[self._pos:end]
        self._pos = min(end, len(self._data))
        return chunk


def install(client: Any) -> ReadBuffer:
    """Route a paho client's socket reads through a new ``ReadBuffer``."""
    buffer = ReadBuffer(client._sock_recv)
    client._sock_recv = buffer.recv
    return buffer
