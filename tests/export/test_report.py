"""report.json and report.html (plots embedded)."""

from __future__ import annotations

import json

from export.report import write_html, write_json


def _doc():
    candidates = [{"id": f"r{r}/onnx/int8/ort-static", "status": s, "metric": m,
                   "latency_ms": lat, "latency_ms_1thread": lat, "size_bytes": 1000,
                   "reason": "why <b>"}
                  for r, s, m, lat in ((0, "passed", 0.99, 1.0), (0.5, "chosen", 0.985, 0.5),
                                       (0.7, "rejected", 0.9, 0.3))]
    candidates.append({"id": "r0/tflite/int8/litert-pt2e", "status": "failed", "metric": None,
                       "latency_ms": None, "size_bytes": None, "reason": "tflite cannot"})
    profile = {"status": "ok", "bundle": "out/x/m-1.ekb", "baseline_metric": 0.99,
               "allowed_drop": 0.01, "candidates": candidates, "references": [], "parity": {}}
    return {"model": "m.py:f", "metric": "top1_accuracy", "baseline_metric": 0.99,
            "students": [{"key": "r0"}], "profiles": {"x86-64": profile}}


def test_json_and_html(tmp_path):
    doc = _doc()
    assert json.loads(write_json(doc, tmp_path / "r.json").read_text()) == doc
    page = write_html(doc, tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in page and "x86-64" in page
    assert "why &lt;b&gt;" in page and "<tr class='chosen'>" in page
