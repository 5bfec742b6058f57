"""The dashboard's queries at fleet scale (SQLite and PostgreSQL): 10,000 device rows and
drift windows for a fifth of them, inserted in bulk; the devices page returns one page with
the right totals for every filter and sort (no timing asserted: see the report's figures)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from cloud_sync.dashboard import queries as q
from cloud_sync.store import transaction
from cloud_sync.store.schema import devices, drift_scores
from tests.cloud_sync.dashboard.conftest import AUTH
from tests.cloud_sync.dashboard.html import text

N = 10_000
STATES = ("online",) * 7 + ("stale",) * 2 + ("offline",)
WORST = "dev-07777"
NOW = 1_795_329_600.0


def _device(i: int) -> dict:
    return {"id": f"dev-{i:05d}", "fleet": f"fleet-{i % 4}", "profile": "rpi4",
            "model_name": "digits", "model_version": str(1 + i % 3), "state": STATES[i % 10],
            "registered_by": "auto", "created_at": NOW - 86_400, "last_seen": NOW - i}


def _score(i: int, kind: str, window: int) -> dict:
    score = 50.0 if f"dev-{i:05d}" == WORST and window == 1 else (i % 97) / 100
    return {"scope": "device", "scope_key": f"dev-{i:05d}", "fleet": f"fleet-{i % 4}",
            "device_id": f"dev-{i:05d}", "model_name": "digits", "model_version": "1",
            "kind": kind, "window_start": NOW - (2 - window) * 60,
            "window_end": NOW - (1 - window) * 60, "inferences": 400, "score": score,
            "threshold": 1.0, "verdict": "drift" if score > 1 else "ok", "details": {},
            "computed_at": NOW}


def _fill(engine) -> None:
    with transaction(engine) as conn:
        conn.execute(sa.insert(devices), [_device(i) for i in range(N)])
        conn.execute(sa.insert(drift_scores), [
            _score(i, kind, w) for i in range(2, N, 5) for kind in ("input", "output", "confidence")
            for w in (0, 1)])


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr class="device-row">\s*<td><a href="/dashboard/devices/([^"]+)"', page)


def test_devices_page_at_ten_thousand_devices(engine, client):
    _fill(engine)
    first = client.get("/dashboard/devices", headers=AUTH).text
    assert _ids(first) == [f"dev-{i:05d}" for i in range(50)]
    assert "10,000 devices match · showing 1–50" in text(first) and "page 1 of 200" in text(first)
    last = client.get("/dashboard/devices?page=200&per_page=50", headers=AUTH).text
    assert _ids(last)[-1] == "dev-09999" and len(_ids(last)) == 50
    stale = client.get("/dashboard/devices?state=stale&fleet=fleet-3", headers=AUTH).text
    assert "500 devices match" in text(stale) and len(_ids(stale)) == 50
    worst = client.get("/dashboard/devices?sort=drift&dir=desc&per_page=25", headers=AUTH).text
    assert _ids(worst)[0] == WORST and len(_ids(worst)) == 25
    assert "10,000 devices" in text(client.get("/dashboard/", headers=AUTH).text)


def test_device_table_query_totals_and_drift_of_the_page(engine):
    _fill(engine)
    with engine.connect() as conn:
        page = q.device_table(conn, q.DeviceFilter(version="2", sort="last_seen", descending=True,
                                                   page=3, per_page=100))
        assert page.total == 3_333 and len(page.rows) == 100 and page.pages(100) == 34
        seen = [r["last_seen"] for r in page.rows]
        assert seen == sorted(seen, reverse=True)
        scored = [r for r in page.rows if r["drift_ratio"] is not None]
        assert scored and all(int(r["id"][4:]) % 5 == 2 for r in scored)
        by_drift = q.device_table(conn, q.DeviceFilter(sort="drift", descending=True, per_page=3))
        assert by_drift.rows[0]["id"] == WORST and by_drift.rows[0]["drifting"] == 1
        overview = q.fleet_overview(conn)
        assert overview["total"] == N and overview["states"] == {
            "online": 7_000, "stale": 2_000, "offline": 1_000}
        assert sorted(v["devices"] for v in overview["versions"]) == [3_333, 3_333, 3_334]
