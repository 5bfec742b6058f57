"""How values read: times relative with ISO on hover, numbers rounded, documents as tables
whose cells are never raw dicts."""

from __future__ import annotations

from cloud_sync.dashboard import format as fmt

NOW = 1_795_329_600.0


def test_ago_and_iso():
    assert fmt.ago(NOW - 12, NOW) == "12 s ago"
    assert fmt.ago(NOW - 300, NOW) == "5 min ago"
    assert fmt.ago(NOW - 3 * 3600 - 5, NOW) == "3 h ago"
    assert fmt.ago(NOW - 2 * 86_400, NOW) == "2 d ago"
    assert fmt.ago(NOW + 90, NOW) == "in 1 min"
    assert fmt.ago(None, NOW) == "never"
    assert fmt.iso(NOW) == "2026-11-22T06:40:00+00:00"


def test_numbers():
    assert fmt.number(10_000) == "10,000"
    assert fmt.number(0.123456) == "0.123"
    assert fmt.number(2.0) == "2"
    assert fmt.number(12_345.6) == "12,346"
    assert fmt.number(None) == "–" and fmt.number(True) == "yes"


def test_documents_become_tables_with_times_and_spans():
    doc = {"reason": "drift", "fired_at": NOW, "windows": [[NOW - 60, NOW]],
           "rule": {"k": 2, "kinds": ["input", "output"]},
           "devices": [{"device_id": "d1", "scores": [{"window": [NOW - 60, NOW], "score": 0.5}]},
                       {"device_id": "d2", "extra": None}]}
    summary, nested = fmt.sections(doc)
    rows = {r[0].text: r[1] for r in summary.rows}
    assert rows["fired at"].ts == NOW
    assert rows["windows"].text == "2026-11-22 06:39:00 → 06:40:00 UTC"
    titles = [t for t, _ in nested]
    assert titles == ["rule", "devices"]
    devices = nested[1][1]
    assert devices.headers == ["device id", "scores", "extra"]
    scores = devices.rows[0][1].table
    assert scores.headers == ["window", "score"] and scores.rows[0][1].text == "0.5"
    assert devices.rows[1][2].text == "–"
    assert nested[0][1].rows[1][1].text == "input, output"
