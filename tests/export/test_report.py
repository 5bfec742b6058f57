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


def test_html_shows_splits_search_trials_and_budget(tmp_path):
    doc = _doc() | {
        "splits": {"calibration": 10, "selection": 20, "gate": 20, "gate_source": "half",
                   "used_for": {"gate": "the reported metric only"}},
        "search": {"mode": "adaptive", "stop": "bisected to 0.7 (pass) / 0.82 (fail)",
                   "trials": [{"ratio": 0.5, "step": "start", "parent": "original",
                               "metric": 0.99, "verdict": "pass", "seconds": 3.0},
                              {"ratio": 0.82, "step": "step up", "parent": "r0.7",
                               "metric": 0.9, "verdict": "fail", "seconds": 2.0}],
                   "budget": {"budget_s": 600, "used_s": 42.0, "stopped_by_budget": [],
                              "phases_s": {"distill": 30.0, "export": 8.0, "evaluate": 1.0,
                                           "latency": 3.0}}}}
    doc["profiles"]["x86-64"]["latency_note"] = "timed on host x86_64 x2; host timings stand"
    page = write_html(doc, tmp_path / "r.html").read_text()
    assert "search (adaptive)" in page and "bisected to 0.7 (pass) / 0.82 (fail)" in page
    assert "time budget: 42 s of 600 s" in page and "<th>distill</th><td>30</td>" in page
    assert "the reported metric only" in page and "host timings stand" in page
    list_doc = _doc() | {"search": {"mode": "list", "ratios": [0.0, 0.5], "budget": {}}}
    assert "ratios (list)" in write_html(list_doc, tmp_path / "l.html").read_text()


def test_html_cells_read_as_text_never_as_dicts(tmp_path):
    doc = _doc() | {
        "tolerance": {"value": 0.01, "relative": False, "described": "0.01 absolute"},
        "latency_source": {"name": "host", "description": "host x86_64 x2"},
        "students": [{"key": "r0"}, {"key": "r0.5", "prune": {
            "ratio": 0.5, "macs_before": 527_370_000, "macs_after": 256_490_000,
            "params_before": 2_236_682, "params_after": 1_147_770, "from": "original"},
            "distill": {"best_metric": 0.99111, "best_epoch": 2, "epochs_run": 4,
                        "stopped_early": True, "stopped_by": "patience",
                        "memory_format": {"memory_format": "channels_last"},
                        "history": [{"epoch": 0, "seconds": None},
                                    {"epoch": 1, "seconds": 60.5}, {"epoch": 2, "seconds": 61}]}}]}
    doc["profiles"]["x86-64"]["parity"] = {"max_abs_diff": 3.92, "top1_agreement": 0.98667,
                                           "export": {"max_abs_diff": 1.0, "top1_agreement": 1}}
    page = write_html(doc, tmp_path / "r.html").read_text()
    assert "{'" not in page and '{"' not in page and "&#x27;" not in page
    assert "<td>0.01 absolute</td>" in page and "<td>host x86_64 x2</td>" in page
    row = ("<td>r0.5</td><td>original</td><td>channels</td><td>256.5M</td><td>1148k</td>"
           "<td>0.9911</td><td>2 / 4</td><td>patience</td><td>channels_last</td><td>121.5</td>")
    assert row in page
    assert "the file against the original model on the selection split: max |difference| " \
           "of outputs 3.92, top-1 agreement 0.9867; against its own (pruned, distilled) " \
           "torch student: max |difference| of outputs 1, top-1 agreement 1" in page


def test_the_student_table_says_what_pruning_removed():
    from export.report import pruned_text, student_row

    block = {"heads_before": 4, "heads": 2, "ffn_before": 512, "ffn": 232}
    prune = {"structure": "attention", "attention": [{**block, "block": f"l{i}"}
                                                      for i in range(10)]}
    assert pruned_text(prune) == "heads 4 → 2, feed-forward 512 → 232 (10 blocks)"
    mixed = {"attention": [{**block, "block": "a"}, {**block, "heads": 3, "block": "b"}]}
    assert pruned_text(mixed) == ("heads 4 → 2, feed-forward 512 → 232 (1 block); "
                                  "heads 4 → 3, feed-forward 512 → 232 (1 block)")
    assert pruned_text({"structure": "channels", "macs_after": 1}) == "channels"
    assert student_row({"key": "r0"})["pruned"] == "–"  # the original: nothing removed


def test_the_qat_block_says_why_it_ran_and_how_short_its_epochs_were():
    from export.report import qat_html

    text = qat_html({"why": "no mix reached the floor", "epochs_run": 3, "seconds": 61.2,
                     "best_epoch": 2, "history": [{"epoch": 0, "metric": 0.81},
                                                  {"epoch": 1, "metric": 0.82}],
                     "shortened": "epochs shortened to 40 of 160 batches (25%) to fit the "
                                  "80 s left", "folded_batch_norms": ["a.bn"]})
    assert "QAT ran because no mix reached the floor." in text
    assert "3 epoch(s) (epochs shortened to 40 of 160 batches (25%) to fit the 80 s left)" \
        in text
    assert qat_html({"why": "w", "skipped": "s"}) == ("<p>QAT ran because w.</p>"
                                                       "<p>no QAT candidate: s</p>")
