"""The fleet pages over a filled store (SQLite and PostgreSQL): overview counts, the devices
table sorted, filtered and paged by the server, one device with its chart data."""

from __future__ import annotations

import json
import re

from tests.cloud_sync.dashboard.conftest import AUTH
from tests.cloud_sync.dashboard.html import cells, text

ROW = re.compile(r'<tr class="device-row">(.*?)</tr>', re.S)


def _rows(page: str) -> list[list[str]]:
    return [cells(f"<table>{r}</table>") for r in ROW.findall(page)]


def test_overview_counts_states_and_versions(client, filled):
    page = client.get("/dashboard/", headers=AUTH).text
    shown = text(page)
    assert "14 devices" in shown and "11 online" in shown and "2 stale" in shown
    assert "1 offline" in shown and "1 triggers, last 24 h" in shown
    assert "tiny 1 8 57.1 %" in shown and "sim-model 1 6 42.9 %" in shown
    assert "halted" in shown and "done" in shown
    partial = client.get("/dashboard/", headers={**AUTH, "HX-Request": "true"}).text
    assert "<html" not in partial and "11" in partial


def test_devices_table_sorts_filters_and_pages_in_the_server(client, filled):
    everything = _rows(client.get("/dashboard/devices", headers=AUTH).text)
    assert len(everything) == 14 and everything[0][0] == "dev-000"
    worst = _rows(client.get("/dashboard/devices?sort=drift&dir=desc", headers=AUTH).text)
    assert {r[0] for r in worst[:3]} == set(filled.drifted)
    assert all("drift" in r[5] for r in worst[:3]) and worst[3][5] and worst[-1][5] == "–"
    stale = client.get("/dashboard/devices?state=stale&sort=last_seen", headers=AUTH).text
    assert [r[0] for r in _rows(stale)] == ["dev-004", "field-04"]
    assert 'data-testid="device-total">2<' in stale
    lab = _rows(client.get("/dashboard/devices?q=LAB&fleet=lab&version=1", headers=AUTH).text)
    assert [r[0] for r in lab] == ["lab-01", "lab-02", "lab-03", "lab-04"]
    third = client.get("/dashboard/devices?per_page=5&page=3", headers=AUTH).text
    assert [r[0] for r in _rows(third)] == ["lab-01", "lab-02", "lab-03", "lab-04"]
    assert "showing 11–14" in text(third) and "page 3 of 3" in text(third)
    htmx = client.get("/dashboard/devices?q=dev", headers={**AUTH, "HX-Request": "true"}).text
    assert "<html" not in htmx and len(_rows(htmx)) == 6


def test_bad_table_arguments_get_a_one_line_error(client, filled):
    for query, error in (("sort=colour", "unknown sort 'colour'; one of id, fleet"),
                         ("state=asleep", "unknown state 'asleep'; one of unknown, online"),
                         ("page=0", "page must be a whole number >= 1, got '0'"),
                         ("per_page=9999", "per_page must be a whole number >= 1 and at most 500")):
        answer = client.get(f"/dashboard/devices?{query}", headers=AUTH)
        assert answer.status_code == 400 and error in text(answer.text), query


def test_device_page_carries_telemetry_and_drift_series(client, filled):
    page = client.get("/dashboard/devices/dev-000", headers=AUTH).text
    data = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>',
                                page, re.S).group(1))
    telemetry = data["telemetry"]
    assert len(telemetry["ts"]) == 24 and telemetry["ts"] == sorted(telemetry["ts"])
    assert all(v is not None for v in telemetry["latency_p95"] + telemetry["confidence_mean"])
    assert set(data["drift"]) == {"input", "output", "confidence"}
    drift = data["drift"]["input"]
    assert len(drift["ts"]) == 12 and all(t is not None for t in drift["threshold"])
    assert drift["verdict"][0] == "ok" and drift["verdict"][-1] == "drift"
    assert drift["score"][-1] > drift["threshold"][-1]
    assert page.count('data-chart="drift"') == 3 and "Input channels furthest over" in page
    calm = client.get("/dashboard/devices/lab-01", headers=AUTH).text
    assert "No drift windows scored for this device yet." in calm
    missing = client.get("/dashboard/devices/nope", headers=AUTH)
    assert missing.status_code == 404 and "no device 'nope' is registered" in text(missing.text)
