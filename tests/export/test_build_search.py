"""run_build's search on a tiny model: adaptive prune search by default (reported in order,
with where the time went), the reported metric from the gate split only, a spent budget
recorded, and jetson profiles choosing in target order without a device to time on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compress.recipe import Recipe
from compress.splits import selection_and_gate
from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.model import LoadedModel
from export.build import BuildRequest, run_build
from export.errors import BuildError
from tests.compress.tiny import tiny_data

TINY = "tests/compress/tiny.py"
QUICK = {"distill": {"epochs": 1}, "quantize": {"precisions": ["int8"]},
         "search": {"formats": ["onnx"], "latency_runs": 10, "latency_warmup": 1,
                    "latency_rounds": 2}}
ADAPTIVE = {**QUICK, "prune": {"round_to": None, "adaptive": {"max_students": 3}}}


def _request(tmp_path, keypair, recipe, **kw):
    defaults = {"model": f"{TINY}:tiny_model", "data": f"{TINY}:tiny_data",
                "profiles": ["x86-64"], "key_file": keypair[0], "out_dir": tmp_path / "out",
                "recipe": Recipe.from_dict(recipe)}
    return BuildRequest(**{**defaults, **kw})


def _gate_split():
    doc = tiny_data()
    val_x, val_y = (torch.cat(t) for t in zip(*doc["validation"], strict=True))
    return selection_and_gate(val_x, val_y, seed=0)


@pytest.fixture(scope="module")
def adaptive_build(tmp_path_factory, keypair):
    tmp_path = tmp_path_factory.mktemp("adaptive")
    result = run_build(_request(tmp_path, keypair, ADAPTIVE, tolerance="0.1"))
    return result, json.loads(result.report_json.read_text())


def test_default_search_is_adaptive_and_reported_in_order(adaptive_build):
    _, doc = adaptive_build
    search = doc["search"]
    assert search["mode"] == "adaptive"
    ratios = [t["ratio"] for t in search["trials"]]
    assert ratios[:2] == [0.0, 0.5] and len(ratios) == 4  # r0 + max_students
    assert all(t["verdict"] in ("pass", "fail") and t["metric"] is not None
               for t in search["trials"])
    assert search["stop"] and search["passing"][-1] == 0.0
    phases = search["budget"]["phases_s"]
    assert all(phases[p] > 0 for p in ("distill", "export", "evaluate", "latency"))
    assert search["budget"]["budget_s"] == 600 and not search["budget"]["stopped_by_budget"]
    tried = {c["prune_ratio"] for c in doc["profiles"]["x86-64"]["candidates"]}
    assert tried <= set(search["passing"]) and max(search["passing"]) in tried
    keys = [s["key"] for s in doc["students"]]
    assert keys[0] == "r0" and len(keys) == 4


def test_reported_metric_comes_from_the_gate_split_only(adaptive_build, keypair):
    result, doc = adaptive_build
    profile = doc["profiles"]["x86-64"]
    split = _gate_split()
    assert doc["splits"]["gate"] == len(split.gate_y) == 32 and doc["splits"]["selection"] == 32
    assert profile["metric_split"] == "gate" and profile["selection_metric"] is not None
    chosen = next(c for c in profile["candidates"] if c["status"] == "chosen")
    assert chosen["gate_metric"] == pytest.approx(profile["metric"], abs=1e-6)
    with open_bundle(result.bundles["x86-64"], trusted_keys([keypair[1]])) as opened:
        outputs = LoadedModel.load(opened).predict(split.gate_x.numpy())[0]
        assert opened.manifest.metrics.metric == profile["metric"]
    on_gate = float((outputs.argmax(1) == split.gate_y.numpy()).mean())
    assert on_gate == pytest.approx(profile["metric"], abs=1e-6)
    html = result.report_html.read_text()
    assert "data splits" in html and "search (adaptive)" in html and "time budget" in html


def test_a_hand_written_ratio_list_is_measured_as_before(tmp_path, keypair):
    recipe = {**QUICK, "prune": {"ratios": [0.0, 0.5], "round_to": None}}
    doc = run_build(_request(tmp_path, keypair, recipe, tolerance="0.1")).report
    assert doc["search"]["mode"] == "list" and doc["search"]["ratios"] == [0.0, 0.5]
    ids = sorted(c["id"] for c in doc["profiles"]["x86-64"]["candidates"])
    assert ids == sorted(f"r{r}/onnx/int8/ort-static/t{t}" for r in ("0", "0.5")
                         for t in (1, 2))


def test_a_spent_budget_stops_the_search_and_the_report_says_so(tmp_path, keypair):
    doc = run_build(_request(tmp_path, keypair, ADAPTIVE, tolerance="0.1",
                             time_budget_s=0.05)).report
    budget = doc["search"]["budget"]
    assert budget["budget_s"] == 0.05 and budget["used_s"] > 0.05
    assert any("time budget" in s for s in budget["stopped_by_budget"])
    assert "time budget" in doc["search"]["stop"] and len(doc["search"]["trials"]) <= 2
    assert doc["profiles"]["x86-64"]["status"] == "ok"  # what was measured still ships


def test_jetson_without_a_device_keeps_the_target_order(tmp_path, keypair):
    recipe = {**QUICK, "prune": {"enabled": False},
              "quantize": {"precisions": ["int8", "fp16", "fp32"]}}
    doc = run_build(_request(tmp_path, keypair, recipe, tolerance="0.2",
                             profiles=["jetson-orin-nano"])).report
    profile = doc["profiles"]["jetson-orin-nano"]
    assert profile["selection"] == "target_order"
    assert (profile["format"], profile["precision"]) == ("onnx", "int8")  # the first target
    assert "target order" in profile["latency_note"]
    assert "TensorrtExecutionProvider" in profile["latency_note"]
    assert "do not rank" in profile["selection_note"]
    passed = [c for c in profile["candidates"] if c["status"] == "passed"]
    assert passed and all("profile's order" in c["reason"] for c in passed)
    assert all(np.isfinite(c["latency_ms"]) for c in profile["candidates"])  # still reported
    assert profile["latency_host"].startswith("host ")


def test_measure_on_times_one_device(tmp_path, keypair):
    with pytest.raises(BuildError, match="build one --profile per --measure-on agent"):
        run_build(_request(tmp_path, keypair, QUICK, profiles=["rpi4", "x86-64"],
                           measure_on="http://127.0.0.1:9"))
