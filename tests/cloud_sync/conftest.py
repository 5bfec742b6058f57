"""Cloud-side fixtures: every store test runs on SQLite (a temp file) and on PostgreSQL
(a fresh schema per test; see tests/databases.py)."""

from __future__ import annotations

import pytest

from tests.databases import db_url, pg_admin_url  # noqa: F401 (fixtures)


@pytest.fixture()
def engine(db_url):  # noqa: F811 (the fixture imported above)
    """The store at ``db_url``, migrated to head."""
    from cloud_sync.store import open_store

    engine = open_store(db_url)
    yield engine
    engine.dispose()
