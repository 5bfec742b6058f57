"""``edgekit cloud triggers list`` and ``edgekit cloud samples export``: readable table and
JSON of fired triggers; the export loads with plain numpy and honours its filters; bad
input is a one-line error (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from cloud_sync.store import open_store, transaction
from cloud_sync.triggers.controller import controller_step
from edgekit.cli.cloud_triggers import parse_since
from edgekit.cli.main import app
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S, make_trigger_cfg  # noqa: F401
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows
from tests.databases import db_url, pg_admin_url  # noqa: F401 (fixtures)

runner = CliRunner()


def cloud(*args: str):
    """Run ``edgekit cloud ARGS`` in-process."""
    return runner.invoke(app, ["cloud", *args])


def _fire(db_url: str, cfg) -> None:  # noqa: F811
    engine = open_store(db_url)
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(6, drifted=4), T0, 3, WINDOW_S, samples=2)
        assert len(controller_step(conn, cfg, T0 + 3 * WINDOW_S).fired) == 1
    engine.dispose()


def test_triggers_list_table_and_json(db_url, make_trigger_cfg):  # noqa: F811
    assert "no triggers yet" in cloud("triggers", "list", "--db", db_url).stdout
    _fire(db_url, make_trigger_cfg(actions=[{"kind": "mqtt"}]))
    table = cloud("triggers", "list", "--db", db_url)
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())  # the 80-column test console wraps cells
    assert "sim-model 1" in text and "dev-000" in text and "+1 more" in text
    assert "mqtt: pending" in text and "{" not in text
    listed = json.loads(cloud("triggers", "list", "--db", db_url, "--json").stdout)
    assert len(listed) == 1 and listed[0]["samples_count"] == 36
    assert json.loads(cloud("triggers", "list", "--fleet", "x", "--db", db_url,
                            "--json").stdout) == []


def test_samples_export_loads_and_filters(db_url, make_trigger_cfg, tmp_path):  # noqa: F811
    _fire(db_url, make_trigger_cfg())
    out = tmp_path / "s.npz"
    done = cloud("samples", "export", "--fleet", "f1", "--model", "sim-model", "--version",
                 "1", "-o", str(out), "--db", db_url)
    assert done.exit_code == 0, done.output
    z = np.load(out)  # no pickles
    assert z["inputs"].shape == (36, 1, 3, 4, 4) and z["inputs"].dtype == np.float32
    assert len(z["predictions"]) == len(z["confidence"]) == len(z["time"]) == 36
    assert set(z["reason"]) == {"low_confidence"} and len(set(z["device"])) == 6
    assert (np.diff(z["time"]) >= 0).all() and json.loads(str(z["meta"]))["samples"] == 36
    since = cloud("samples", "export", "--fleet", "f1", "--since", str(T0 + 2 * WINDOW_S),
                  "--limit", "5", "-o", str(out), "--db", db_url, "--json")
    assert json.loads(since.stdout)["samples"] == 5
    assert np.load(out)["time"].min() >= T0 + 2 * WINDOW_S
    empty = cloud("samples", "export", "--fleet", "nobody", "-o", str(out), "--db", db_url)
    assert empty.exit_code == 0 and np.load(out)["inputs"].shape[0] == 0
    bad = cloud("samples", "export", "--fleet", "f1", "--since", "yesterday", "-o", str(out),
                "--db", db_url)
    assert bad.exit_code != 0 and "--since 'yesterday'" in str(bad.exception)  # main(): 1 line


def test_since_forms():
    assert parse_since("100.5") == 100.5 and parse_since("2h", now=10_000.0) == 2_800.0
    assert parse_since(None) is None
