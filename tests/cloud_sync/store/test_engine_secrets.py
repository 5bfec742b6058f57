"""A database URL's password never reaches a StoreError (workers and ``cloud serve`` print
them), and the PostgreSQL on-connect setup asks only for what the server has."""

from __future__ import annotations

import pytest

from cloud_sync.errors import StoreError
from cloud_sync.store import engine as store_engine
from cloud_sync.store import open_store, parse_url

PASSWORD = "hunter2-Sup3rS3cret"


@pytest.mark.parametrize("url", [
    f"postgresql://edgekit:{PASSWORD}@127.0.0.1:1/edgekit",  # nothing listens on port 1
    f"postgres://edgekit:{PASSWORD}@127.0.0.1:1/edgekit?password={PASSWORD}",
])
def test_an_unreachable_postgresql_url_with_a_password_errors_without_it(url):
    with pytest.raises(StoreError) as info:
        open_store(url)
    message = str(info.value)
    assert "cannot reach database" in message and "127.0.0.1" in message
    assert PASSWORD not in message and "***" in message


@pytest.mark.parametrize("url", [
    f"postgresql://edgekit:{PASSWORD}@db:notaport/edgekit",  # not a URL
    f"postgresql://edgekit:{PASSWORD}@db",  # names no database
    f"sqlite://edgekit:{PASSWORD}@/",  # names no file
])
def test_an_unusable_url_with_a_password_errors_without_it(url):
    with pytest.raises(StoreError) as info:
        parse_url(url)
    assert PASSWORD not in str(info.value) and "***" in str(info.value)


def test_a_password_the_driver_echoes_is_hidden(monkeypatch):
    engine = store_engine.create_engine(f"postgresql://edgekit:{PASSWORD}@127.0.0.1:1/edgekit")

    def connect(*_args, **_kwargs):
        raise __import__("sqlalchemy").exc.OperationalError(
            "connect", {}, Exception(f"bad option near '{PASSWORD}'"))

    monkeypatch.setattr(engine, "connect", connect)
    with pytest.raises(StoreError) as info:
        store_engine.check(engine)
    assert PASSWORD not in str(info.value) and "bad option near '***'" in str(info.value)


class _Cursor:
    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str) -> None:
        self.sent.append(sql)


class _Connection:
    """A DBAPI connection to a server of ``server_version`` (``server_version_num``)."""

    def __init__(self, server_version: int) -> None:
        self.info = type("Info", (), {"server_version": server_version})()
        self.sent: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self.sent)

    def commit(self) -> None:
        self.sent.append("COMMIT")


@pytest.mark.parametrize("version, user_timeout", [(110022, False), (120000, True),
                                                   (160004, True)])
def test_tcp_user_timeout_is_set_only_on_postgresql_12_and_later(version, user_timeout):
    conn = _Connection(version)
    store_engine._postgresql_on_connect(conn, None)
    assert any("tcp_keepalives_idle" in sql for sql in conn.sent)
    assert any("tcp_user_timeout" in sql for sql in conn.sent) == user_timeout
    assert conn.sent[-1] == "COMMIT"
