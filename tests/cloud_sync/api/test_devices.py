"""/api/v1/devices: pages and filters, one device, telemetry time series; ingest stats."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.registry import Sighting, add_device, record_seen, record_status
from cloud_sync.store import bump_counters, insert_messages, message_row, transaction
from cloud_sync.store.schema import quarantine
from tests.cloud_sync.api.conftest import AUTH


def _fleet(engine) -> None:
    with transaction(engine) as conn:
        add_device(conn, "pi-1", "lab", now=1.0)
        record_seen(conn, [Sighting(f"cam-{i}", "field", 100.0 + i) for i in range(5)])
        record_status(conn, "cam-3", "degraded", model_name="tiny", model_version="1")


def _telemetry(device: str, seq: int, ts: float) -> dict:
    return {"v": "1.1", "device_id": device, "seq": seq, "ts": ts, "window_s": 10.0,
            "inferences": 100 + seq, "errors": seq % 2, "model": {"name": "tiny", "version": "1"},
            "latency_ms": {"p50": 1.0, "p95": 2.0 + seq, "p99": 3.0},
            "confidence": {"edges": [0.0, 0.5, 1.0], "counts": [10, 90], "mean": 0.9}}


def test_list_pages_and_filters(client, engine):
    _fleet(engine)
    first = client.get("/api/v1/devices?limit=4", headers=AUTH).json()
    assert first["total"] == 6 and [d["id"] for d in first["items"]] == [
        "cam-0", "cam-1", "cam-2", "cam-3"]
    rest = client.get("/api/v1/devices?limit=4&offset=4", headers=AUTH).json()
    assert [d["id"] for d in rest["items"]] == ["cam-4", "pi-1"]
    lab = client.get("/api/v1/devices?fleet=lab", headers=AUTH).json()
    assert [d["id"] for d in lab["items"]] == ["pi-1"] and lab["items"][0]["has_credentials"]
    degraded = client.get("/api/v1/devices?state=degraded", headers=AUTH).json()
    assert [d["id"] for d in degraded["items"]] == ["cam-3"] and degraded["total"] == 1
    assert "credential_hash" not in str(first)


def test_bad_list_queries_are_one_line(client):
    state = client.get("/api/v1/devices?state=asleep", headers=AUTH)
    assert state.status_code == 400 and "unknown state 'asleep'" in state.json()["error"]
    limit = client.get("/api/v1/devices?limit=5000", headers=AUTH)
    assert limit.status_code == 422 and limit.json()["error"].startswith("query limit:")


def test_detail_and_unknown_device(client, engine):
    _fleet(engine)
    cam = client.get("/api/v1/devices/cam-3", headers=AUTH).json()
    assert cam["state"] == "degraded" and cam["model_version"] == "1"
    missing = client.get("/api/v1/devices/nope", headers=AUTH)
    assert missing.status_code == 404 and "no device 'nope'" in missing.json()["error"]


def test_telemetry_series_with_from_to_and_limit(client, engine):
    _fleet(engine)
    with transaction(engine) as conn:
        insert_messages(conn, [message_row("field", "telemetry", _telemetry("cam-1", s, 1000.0 + s),
                                           2000.0 + s) for s in range(10)])
        insert_messages(conn, [message_row("field", "status", {
            "v": "1.1", "device_id": "cam-1", "seq": 1, "ts": 1003.5, "state": "online"},
            2000.0)])
    url = "/api/v1/devices/cam-1/telemetry"
    whole = client.get(url, headers=AUTH).json()
    assert [p["seq"] for p in whole["points"]] == list(range(10)) and not whole["truncated"]
    point = whole["points"][3]
    assert point["latency_p95"] == 5.0 and point["inferences"] == 103
    assert point["confidence_mean"] == 0.9 and point["model_version"] == "1"
    window = client.get(f"{url}?from=1002&to=1006", headers=AUTH).json()
    assert [p["seq"] for p in window["points"]] == [2, 3, 4, 5]
    newest = client.get(f"{url}?limit=3", headers=AUTH).json()
    assert [p["seq"] for p in newest["points"]] == [7, 8, 9] and newest["truncated"]
    backwards = client.get(f"{url}?from=5&to=1", headers=AUTH)
    assert backwards.status_code == 400 and "after 'from'" in backwards.json()["error"]
    assert client.get(f"{url}?from=yesterday", headers=AUTH).status_code == 422
    assert client.get("/api/v1/devices/nope/telemetry", headers=AUTH).status_code == 404


def test_ingest_stats_counters_and_quarantine(client, engine):
    with transaction(engine) as conn:
        bump_counters(conn, {"accepted": 7, "duplicate": 2}, now=1.0)
        conn.execute(sa.insert(quarantine), [
            {"received_at": 1.0, "topic": "t", "reason": reason, "payload": b"x",
             "payload_size": 1} for reason in ("bad_json", "bad_json", "schema")])
    stats = client.get("/api/v1/ingest/stats", headers=AUTH).json()
    assert stats["counters"] == {"accepted": 7, "duplicate": 2}
    assert stats["quarantine"] == {"kept": 3, "by_reason": {"bad_json": 2, "schema": 1}}
