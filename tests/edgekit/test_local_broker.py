"""``free_port``: ports for servers started next, outside the range client connections use."""

from __future__ import annotations

import socket

from edgekit import local_broker
from edgekit.local_broker import free_port


def test_ports_come_from_below_the_ephemeral_range(tmp_path, monkeypatch):
    span = tmp_path / "range"
    span.write_text("32768\t60999\n")
    monkeypatch.setattr(local_broker, "EPHEMERAL_RANGE", span)
    ports = {free_port() for _ in range(20)}
    assert all(local_broker.LOWEST_PICKED <= p < 32768 for p in ports)


def test_a_port_someone_listens_on_is_skipped(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        span = tmp_path / "range"
        span.write_text(f"{busy + 5000} {busy + 6000}\n")
        monkeypatch.setattr(local_broker, "LOWEST_PICKED", busy - 2000)
        monkeypatch.setattr(local_broker, "EPHEMERAL_RANGE", span)
        picks = iter(range(busy, busy + 50))  # the listened-on port is offered first
        monkeypatch.setattr(local_broker.random, "randrange", lambda _lo, _hi: next(picks))
        port = free_port()
    assert port != busy
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it really was free


def test_without_a_known_range_the_kernel_picks(tmp_path, monkeypatch):
    monkeypatch.setattr(local_broker, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert 0 < free_port() < 65536
