"""run_build on a tiny model: signed bundles that the device accepts, a complete report, and
no bundle at all when nothing is within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compress.errors import RecipeError
from compress.recipe import Recipe
from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.model import LoadedModel
from export.build import BuildRequest, run_build
from export.errors import BuildError
from tests.compress.tiny import tiny_tensors

TINY = "tests/compress/tiny.py"
FAST = {"prune": {"ratios": [0.0, 0.5], "round_to": None}, "distill": {"epochs": 2},
        "search": {"formats": ["onnx"], "latency_runs": 20, "latency_warmup": 2}}
PROFILE_KEYS = {"bundle", "format", "precision", "metric", "baseline_metric", "latency_ms",
                "baseline_latency_ms", "size_bytes", "baseline_size_bytes", "parity",
                "candidates"}


def _request(tmp_path, keypair, recipe, **kw):
    defaults = {"model": f"{TINY}:tiny_model", "data": f"{TINY}:tiny_data",
                "profiles": ["x86-64"], "key_file": keypair[0], "out_dir": tmp_path / "out",
                "recipe": Recipe.from_dict(recipe), "version": "3", "parent_version": "2"}
    return BuildRequest(**{**defaults, **kw})


def test_build_writes_a_bundle_the_device_accepts(tmp_path, keypair):
    result = run_build(_request(tmp_path, keypair, FAST, tolerance="5%",
                                artifacts_dir=tmp_path / "artifacts"))
    doc = json.loads(result.report_json.read_text())
    profile = doc["profiles"]["x86-64"]
    assert set(profile) >= PROFILE_KEYS and profile["status"] == "ok"
    assert set(profile["parity"]) >= {"max_abs_diff", "top1_agreement"}
    assert doc["tolerance"]["relative"] and "5% of baseline" in doc["tolerance"]["described"]
    assert all(Path(c["file"]).is_file() for c in profile["candidates"])  # kept artifacts
    statuses = {c["status"] for c in profile["candidates"]}
    assert "chosen" in statuses and all(c["reason"] for c in profile["candidates"])
    chosen = next(c for c in profile["candidates"] if c["status"] == "chosen")
    assert chosen["latency_ms"] == min(c["latency_ms"] for c in profile["candidates"]
                                       if c["status"] in ("chosen", "passed"))
    page = result.report_html.read_text()
    # the trade-off chart; a sensitivity chart too when int8 cost over half the tolerance
    # (it may, on a busy machine's shorter distillation)
    assert page.count("alt='tradeoff' src='data:image/png;base64,") == 1
    ranked = [run for run in profile.get("mixed_precision") or []
              if not run.get("error") and (run.get("sensitivity") or {}).get("layers")]
    assert page.count("data:image/png;base64,") == 1 + len(ranked)
    bundle = tmp_path / "out" / "x86-64" / "tiny-model-3.ekb"
    assert result.bundles == {"x86-64": bundle}
    with open_bundle(bundle, trusted_keys([keypair[1]])) as opened:
        loaded = LoadedModel.load(opened)
        m = opened.manifest
        x, y = tiny_tensors(16, 3)
        assert (loaded.predict(x.numpy())[0].argmax(1) == y.numpy()).mean() >= 0.9
    assert m.model.version == "3" and m.lineage.parent_version == "2"
    assert m.lineage.source_weights_sha256 and m.lineage.calibration_sha256 and m.lineage.tools
    assert m.lineage.recipe["prune"]["ratios"] == [0.0, 0.5]
    assert m.lineage.compression.prune_ratio == m.metrics.prune_ratio
    assert m.labels == ["tl", "tr", "bl", "br"] and m.inputs[0].layout == "NCHW"
    assert m.reference_stats.n == 32 and m.metrics.format == profile["format"]
    assert m.metrics.parity.max_abs_diff == profile["parity"]["max_abs_diff"]
    assert m.golden.atol > 0


def test_nothing_within_tolerance_ships_nothing(tmp_path, keypair):
    recipe = {**FAST, "prune": {"enabled": False}, "quantize": {"precisions": ["int8"]}}
    request = _request(tmp_path, keypair, recipe, data=f"{TINY}:strict_data", tolerance="0")
    with pytest.raises(BuildError) as info:
        run_build(request)
    assert "no bundle for x86-64" in str(info.value) and "\n" not in str(info.value)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    profile = doc["profiles"]["x86-64"]
    assert profile["status"] == "failed" and "no candidate within tolerance" in profile["reason"]
    assert all(c["status"] == "rejected" for c in profile["candidates"])
    assert not (tmp_path / "out" / "x86-64").exists()


def test_unknown_method_fails_before_any_work(tmp_path, keypair):
    recipe = {"quantize": {"methods": ["default", "inc8"]}}
    with pytest.raises(RecipeError, match=r"field 'quantize\.methods': unknown method 'inc8'"):
        run_build(_request(tmp_path, keypair, recipe, model=f"{TINY}:broken_factory"))


@pytest.mark.slow
def test_a_target_that_cannot_express_the_model_moves_on(tmp_path, keypair):
    recipe = {**FAST, "prune": {"enabled": False}, "quantize": {"precisions": ["int8"]},
              "search": {"latency_runs": 20}}
    result = run_build(_request(tmp_path, keypair, recipe, model=f"{TINY}:bucket_model",
                                profiles=["rpi4"], tolerance="0.05"))
    profile = result.report["profiles"]["rpi4"]
    failed = [c for c in profile["candidates"] if c["format"] == "tflite"]
    assert failed and all(c["status"] == "failed" for c in failed)
    assert all(c["reason"].startswith("tflite cannot express operator aten.bucketize")
               for c in failed)
    assert profile["format"] == "onnx" and profile["status"] == "ok"
    assert np.isfinite(profile["latency_ms"])


def test_a_transformer_is_built_with_fewer_heads_and_runs_on_the_device(tmp_path, keypair):
    """Attention pruning end to end: the 0.5 student loses heads and feed-forward width, the
    report's student table says so, and the shipped bundle passes the device's golden
    parity check in its runtime and classifies."""
    recipe = {**FAST, "search": {**FAST["search"], "formats": ["onnx", "tflite"]}}
    result = run_build(_request(tmp_path, keypair, recipe, tolerance="10%",
                                model="tests/compress/tiny_attention.py:tiny_transformer"))
    doc = json.loads(result.report_json.read_text())
    [student] = [s for s in doc["students"] if s["key"] == "r0.5"]
    assert student["prune"]["structure"] == "attention"
    blocks = student["prune"]["attention"]
    assert len(blocks) == 2 and all(b["heads"] < 4 and b["ffn"] < 64 for b in blocks)
    assert f"heads 4 → {blocks[0]['heads']}" in result.report_html.read_text()
    bundle = result.bundles["x86-64"]
    with open_bundle(bundle, trusted_keys([keypair[1]])) as opened:
        loaded = LoadedModel.load(opened)  # the golden pairs re-checked in the runtime
        assert loaded.golden is not None and loaded.golden.ok
        x, y = tiny_tensors(16, 3)
        assert (loaded.predict(x.numpy())[0].argmax(1) == y.numpy()).mean() >= 0.8
