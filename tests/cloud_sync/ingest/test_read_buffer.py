"""``ReadBuffer``: paho's small reads served from one large read, byte for byte; the
socket's BlockingIOError and end of stream pass through; ``pending`` while bytes wait."""

from __future__ import annotations

import pytest

from cloud_sync.ingest import read_buffer
from cloud_sync.ingest.read_buffer import ReadBuffer


class FakeSocket:
    def __init__(self, chunks: list[bytes | type[BaseException]]) -> None:
        self.chunks, self.calls = list(chunks), 0

    def recv(self, size: int) -> bytes:
        self.calls += 1
        item = self.chunks.pop(0)
        if isinstance(item, type):
            raise item()
        assert size == read_buffer.SIZE
        return item


def test_small_reads_come_from_one_large_read_in_order():
    sock = FakeSocket([b"0123456789", b"abc", b""])
    buf = ReadBuffer(sock.recv)
    assert [buf.recv(1), buf.recv(3), buf.recv(100)] == [b"0", b"123", b"456789"]
    assert sock.calls == 1 and not buf.pending()
    assert buf.recv(2) == b"ab" and buf.pending()
    assert buf.recv(5) == b"c" and not buf.pending()
    assert buf.recv(1) == b""  # end of stream passes through


def test_nothing_waiting_raises_what_the_socket_raises():
    buf = ReadBuffer(FakeSocket([BlockingIOError, b"x"]).recv)
    with pytest.raises(BlockingIOError):
        buf.recv(1)
    assert buf.recv(1) == b"x"


def test_install_routes_a_clients_reads_through_the_buffer():
    class Client:
        def __init__(self) -> None:
            self.sock = FakeSocket([b"hello"])

        def _sock_recv(self, size: int) -> bytes:
            return self.sock.recv(size)

    client = Client()
    buf = read_buffer.install(client)
    assert client._sock_recv(2) == b"he" and buf.pending()
    assert client._sock_recv(9) == b"llo" and client.sock.calls == 1
