"""Per-layer sensitivity and mixed precision on a real model with one layer int8 destroys
(``tests/export/sensitive.py``), with real ONNX Runtime: the ranking finds the layer, the
mixed candidate keeps it in float and passes the gate where full int8 fails, and the
build reports it (report.json and the HTML chart) unless the recipe turns it off."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compress.budget import Budget
from compress.evaluation import top1_accuracy
from compress.outputs import to_numpy
from compress.recipe import Recipe
from compress.search import PASSED, REJECTED, SearchPlan, run_search
from compress.techniques import Student, StudentData, Students
from edge_agent.bundle import open_bundle, trusted_keys
from export.build import BuildRequest, mixed_hook, recovery_reserve, run_build
from export.evaluate import EvalData, Evaluator
from export.mixed_precision import MixedPrecision
from export.onnx import ort_static, quantized_nodes
from export.runner import ExportedModel
from export.sensitivity import output_error, rank_layers
from hardware_profiles import get_profile
from tests.compress.tiny import fit_tiny_tensors, tiny_tensors
from tests.export.conftest import make_job, make_target
from tests.export.sensitive import SENSITIVE, OutlierMLP, trained_outlier_model

CONSUMER = "fc3"  # reads the outlier tensor, so quantizing it alone destroys it too


def only(fmt: str) -> dict:
    """A quick recipe: no pruning or distillation, int8 and fp32 of one format."""
    return {"prune": {"enabled": False}, "distill": {"enabled": False},
            "quantize": {"precisions": ["int8", "fp32"]},
            "search": {"formats": [fmt], "latency_runs": 10, "latency_warmup": 1,
                       "latency_rounds": 2}}


ONNX_ONLY = only("onnx")
# (format, int8 method, how the format names a Linear layer, layers the mix keeps float:
# ONNX keeps a node's tensors float, so fc3 alone frees the outlier tensor; PT2E leaves a
# module's input quantized by its other users' annotation, so it needs fc2 and fc3)
SELECTIVE = [("onnx", "ort-static", lambda name: f"/{name}/Gemm", 1),
             ("tflite", "litert-pt2e", lambda name: name, 2)]


@pytest.fixture(scope="module")
def model():
    return trained_outlier_model()


@pytest.fixture(scope="module")
def data():
    (cal_x, _), (val_x, val_y) = tiny_tensors(64, 2), tiny_tensors(200, 3)
    return cal_x, val_x, val_y


def _accuracy(path, x, y):
    outputs = ExportedModel("onnx", path, {}).predict(x.numpy())
    return float((outputs.argmax(1) == y.numpy()).mean()), outputs


def _layer(name: str) -> str:
    return f"/{name}/Gemm"  # what the TorchScript exporter names a Linear's node


@pytest.fixture(scope="module")
def int8_job(model, data, tmp_path_factory):
    cal_x, val_x, _ = data
    work = tmp_path_factory.mktemp("sens")
    job = make_job(model, val_x[:1], cal_x, make_target("onnx", "int8"), work)
    return job, ort_static(job, work / "full.onnx")


def test_the_ranking_finds_the_layer_int8_destroys(model, data, int8_job):
    _, val_x, val_y = data
    job, full = int8_job
    float_metric, reference = _accuracy(job.fp32_file(), val_x, val_y)
    int8_metric, _ = _accuracy(full, val_x, val_y)
    assert float_metric > 0.95 and int8_metric < 0.5  # int8 destroys this model

    def probe(layer):
        job.options = {"quantize_only": [layer]}
        return _accuracy(ort_static(job, job.workdir / "probe.onnx"), val_x, val_y)

    layers = quantized_nodes(full)
    assert layers == [_layer(n) for n in ("fc1", "fc2", "fc3", "fc4")]
    ranking = rank_layers(layers, probe, float_metric, int8_metric, reference)
    top = {s.layer for s in ranking.layers[:2]}
    assert top == {_layer(SENSITIVE), _layer(CONSUMER)}
    for s in ranking.layers[:2]:
        assert s.drop > 0.5 and s.share > 0.8
    worst = min(s.output_error for s in ranking.layers[:2])
    for s in ranking.layers[2:]:  # the clean layers cost (almost) nothing
        assert s.drop <= 0.02 and s.output_error < worst / 10
    doc = ranking.to_dict()
    assert [r["layer"] for r in doc["layers"]] == ranking.order() and not doc["unranked"]


def test_one_layer_in_float_at_a_time_would_not_see_it(data, int8_job, monkeypatch):
    """Why the ranking quantizes one layer at a time (export/sensitivity.py): with ORT's
    nodes_to_exclude alone (every layer in int8 but one), neither layer touching the
    outlier tensor recovers much, since the other still quantizes the tensor. keep_float
    also leaves the node's tensors float (export/onnx.py:float_tensors), so keeping the
    consumer alone in float does recover."""
    import export.onnx

    _, val_x, val_y = data
    job, _ = int8_job

    def accuracy(keep, name):
        job.options = {"keep_float": keep}
        return _accuracy(ort_static(job, job.workdir / name), val_x, val_y)[0]

    with monkeypatch.context() as patch:
        patch.setattr(export.onnx, "float_tensors", lambda path, nodes: 0)
        recovered = {name: accuracy([_layer(name)], "allbut.onnx")
                     for name in (SENSITIVE, CONSUMER)}
        both = accuracy([_layer(SENSITIVE), _layer(CONSUMER)], "both.onnx")
    assert max(recovered.values()) < 0.6 and both > 0.95
    assert accuracy([_layer(CONSUMER)], "consumer.onnx") > 0.95


def test_a_time_budget_leaves_layers_unranked():
    ranking = rank_layers(["a", "b", "c"], lambda layer: (0.5, np.ones(3)), 1.0, 0.2,
                          np.ones(3), out_of_time=lambda: True)
    assert [s.layer for s in ranking.layers] == ["a"] and ranking.unranked == ["b", "c"]
    assert ranking.order() == ["a", "b", "c"]


def test_output_error_is_relative_to_the_reference():
    assert output_error(np.ones(4), np.ones(4)) == 0
    assert output_error(np.zeros(4), np.full(4, 2.0)) == pytest.approx(1.0)
    assert output_error((np.ones(2), np.ones(2)), (np.ones(2), 2 * np.ones(2))) == \
        pytest.approx(0.2)


def _search(model, data, tmp_path, recipe: Recipe, allowed=0.02, budget_s=3600.0):
    cal_x, val_x, val_y = data
    metric = top1_accuracy
    reference = to_numpy(model(val_x).detach())
    eval_data = EvalData(example=val_x[:1], calibration=cal_x, val_x=val_x, val_y=val_y,
                         reference=reference, metric=metric)
    # a generous budget: a loaded machine must not push the ranking past its share
    evaluator = Evaluator(recipe, eval_data, tmp_path, budget=Budget(budget_s))
    student = Student(model, 0.0)
    students = type("One", (), {"get": lambda self, ratio: student})()
    config = recipe.quantize.mixed_precision
    plan = SearchPlan(mixed=MixedPrecision(evaluator, config) if config.enabled else None)
    baseline = metric(model(val_x), val_y)
    return run_search(get_profile("x86-64"), recipe, students, evaluator, baseline, allowed,
                      plan=plan)


@pytest.mark.parametrize(("fmt", "method", "layer", "fewest"), SELECTIVE,
                         ids=[s[0] for s in SELECTIVE])
def test_the_mixed_candidate_passes_where_full_int8_fails(model, data, tmp_path, fmt, method,
                                                          layer, fewest):
    result = _search(model, data, tmp_path, Recipe.from_dict(only(fmt)))
    by_id = {o.candidate.id: o for o in result.outcomes}
    full = by_id[f"r0/{fmt}/int8/{method}/t2"]
    assert full.status == REJECTED and full.metric < 0.5
    mixed = [o for o in result.outcomes if o.candidate.keep_float]
    passing = [o for o in mixed if o.status in (PASSED, "chosen")]
    assert passing, [(o.candidate.id, o.metric, o.status) for o in mixed]
    kept = passing[0].candidate.keep_float
    assert set(kept) <= {layer(SENSITIVE), layer(CONSUMER)} and len(kept) == fewest
    assert passing[0].latency_ms is not None and passing[0].parity
    [run] = result.mixed_precision
    assert run["candidate"] == full.candidate.id and "over the tolerance" in run["trigger"]
    assert run["keep_float"] == list(kept) and run["reached_floor"]
    assert set(kept) <= {r["layer"] for r in run["sensitivity"]["layers"][:2]}
    # the chosen file is whatever is fastest among those within tolerance
    assert result.chosen is not None and result.chosen.status == "chosen"


def test_the_recipe_turns_mixed_precision_off(model, data, tmp_path):
    recipe = Recipe.from_dict({**ONNX_ONLY, "quantize": {
        **ONNX_ONLY["quantize"], "mixed_precision": {"enabled": False}}})
    result = _search(model, data, tmp_path, recipe)
    assert not result.mixed_precision
    assert not any(o.candidate.keep_float for o in result.outcomes)
    assert result.chosen.candidate.precision == "fp32"


def test_a_run_stops_at_its_share_of_the_budget(model, data, tmp_path):
    # a budget spent before the run starts: one layer is ranked, one candidate measured
    [run] = _search(model, data, tmp_path, Recipe.from_dict(ONNX_ONLY),
                    budget_s=1e-6).mixed_precision
    ranked, unranked = run["sensitivity"]["layers"], run["sensitivity"]["unranked"]
    assert len(ranked) == 1 and len(unranked) == 3  # the first layer, then out of time
    assert len(run["candidates"]) == 1 and not run["reached_floor"]


def test_mixed_precision_is_on_by_default_and_round_trips():
    recipe = Recipe()
    assert recipe.quantize.mixed_precision.enabled
    off = Recipe.from_dict({"quantize": {"mixed_precision": {"enabled": False,
                                                              "max_float_layers": 3}}})
    assert Recipe.from_json(off.to_json()) == off


def test_the_build_reports_the_ranking_and_the_chart(tmp_path, keypair):
    request = BuildRequest(model="tests/export/sensitive.py:sensitive_model",
                           data="tests/compress/tiny.py:tiny_data", profiles=["x86-64"],
                           key_file=keypair[0], out_dir=tmp_path / "out",
                           recipe=Recipe.from_dict(ONNX_ONLY), tolerance="0.05")
    result = run_build(request)
    profile = json.loads(result.report_json.read_text())["profiles"]["x86-64"]
    [run] = profile["mixed_precision"]
    assert run["keep_float"] == [_layer(CONSUMER)]  # frees the outlier tensor alone
    assert run["sensitivity"]["layers"][0]["layer"] in run["keep_float"]
    assert run["tried"] and all("latency_ms" in t for t in run["tried"])
    html = result.report_html.read_text()
    assert "alt='sensitivity'" in html and "layers kept in float" in html



def test_a_shipped_mixed_file_names_its_float_layers_in_the_bundle(tmp_path, keypair):
    recipe = Recipe.from_dict({**ONNX_ONLY, "quantize": {"precisions": ["int8"]}})
    request = BuildRequest(model="tests/export/sensitive.py:sensitive_model",
                           data="tests/compress/tiny.py:tiny_data", profiles=["x86-64"],
                           key_file=keypair[0], out_dir=tmp_path / "out", recipe=recipe,
                           tolerance="0.05")
    result = run_build(request)
    profile = json.loads(result.report_json.read_text())["profiles"]["x86-64"]
    chosen = next(c for c in profile["candidates"] if c["status"] == "chosen")
    assert chosen["keep_float"] == [_layer(CONSUMER)]
    with open_bundle(result.bundles["x86-64"], trusted_keys([keypair[1]])) as opened:
        steps = opened.manifest.lineage.compression.steps
        assert opened.manifest.metrics.precision == "int8"
    assert steps["mixed_precision"] == {"keep_float": [_layer(CONSUMER)],
                                        "method": "ort-static"}


def test_the_build_reports_what_qat_did(tmp_path, keypair):
    recipe = Recipe.from_dict({**ONNX_ONLY, "quantize": {
        **ONNX_ONLY["quantize"], "mixed_precision": {"enabled": False}, "qat": {"epochs": 1}}})
    request = BuildRequest(model="tests/export/sensitive.py:sensitive_model",
                           data="tests/compress/tiny.py:tiny_data", profiles=["x86-64"],
                           key_file=keypair[0], out_dir=tmp_path / "out", recipe=recipe,
                           tolerance="0.05")
    result = run_build(request)
    doc = json.loads(result.report_json.read_text())
    [run] = doc["profiles"]["x86-64"]["mixed_precision"]
    assert run["qat"]["epochs_run"] == 1 and len(run["qat"]["history"]) == 2
    assert {t["variant"] for t in run["tried"]} == {"qat"}  # one per thread count
    assert run["tried"][0]["int8_latency_ms"] and run["tried"][0]["metric"] is not None
    html = result.report_html.read_text()
    assert "quantization-aware training: 1 epoch(s)" in html and "{" not in html.split(
        "quantization-aware training")[1][:400]


class ConvBnSiLU(nn.Module):
    """Conv2d -> BatchNorm2d -> SiLU blocks inside Sequentials, like the detector's."""

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.SiLU())

        self.stem = block(3, 8)
        self.stage = nn.Sequential(block(8, 8), block(8, 8))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)))


def test_one_conv_bn_silu_layer_in_int8_is_quantized_in_tflite(tmp_path):
    """litert's conv annotators filter the conv's weight node too, which torch.export
    gives no module stack: the filter must place it in its module, or a single conv
    "in int8" stays float (output error ~1e-14 on the detector)."""
    from export.tflite import litert_pt2e, pt2e_layers

    torch.manual_seed(0)
    model = ConvBnSiLU().eval()
    x = torch.randn(16, 3, 16, 16)
    job = make_job(model, x[:1], x, make_target("tflite", "int8"), tmp_path)
    assert pt2e_layers(job, tmp_path) == ["stem.0", "stage.0.0", "stage.1.0", "head"]
    reference = model(x[:4]).detach().numpy()
    job.options = {"quantize_only": ["stage.0.0"]}
    one = ExportedModel("tflite", litert_pt2e(job, tmp_path / "one.tflite"), {})
    assert output_error(one.predict(x[:4].numpy()), reference) > 1e-8


def test_keeping_an_onnx_node_in_float_changes_the_file(tmp_path):
    """ORT's nodes_to_exclude alone left a SiLU's Mul between two quantized convs with
    every tensor still quantized by its neighbours: the file was full int8's. keep_float
    leaves the node's tensors float too, so each kept node gives a different file."""
    from export.onnx import float_tensors

    torch.manual_seed(0)
    model = ConvBnSiLU().eval()
    x = torch.randn(16, 3, 16, 16)
    job = make_job(model, x[:1], x, make_target("onnx", "int8"), tmp_path)
    full = ort_static(job, tmp_path / "full.onnx")
    nodes = quantized_nodes(full)
    mul = "/stage/stage.0/stage.0.2/Mul"
    assert mul in nodes
    full_out = ExportedModel("onnx", full, {}).predict(x[:4].numpy())
    outputs = {}
    for node in (mul, "/stage/stage.0/stage.0.0/Conv"):
        job.options = {"keep_float": [node]}
        path = ort_static(job, tmp_path / "kept.onnx")
        outputs[node] = ExportedModel("onnx", path, {}).predict(x[:4].numpy())
        assert np.abs(outputs[node] - full_out).max() > 1e-4, node
    assert np.abs(outputs[mul] - outputs["/stage/stage.0/stage.0.0/Conv"]).max() > 0
    assert float_tensors(tmp_path / "kept.onnx", ["no such node"]) == 0


def _ranking(shares, float_metric=1.0, int8_metric=0.9, unranked=()):
    from export.sensitivity import LayerSensitivity, SensitivityRanking

    loss = float_metric - int8_metric
    layers = [LayerSensitivity(f"l{i}", float_metric - s * loss, s * loss, s, 0.0)
              for i, s in enumerate(shares)]
    return SensitivityRanking(layers, float_metric, int8_metric, 0.0, list(unranked))


def test_group_sizes_double_when_the_loss_is_spread():
    from export.mixed_precision import group_sizes

    # one layer carries the loss: the fewest, one at a time
    assert group_sizes(_ranking([0.9, 0.1, 0.0]), 0.99, 8) == [1, 2, 3]
    # the detector: 108 layers, the largest a sixth of the loss
    spread = _ranking([0.18, 0.06, 0.04, 0.03] + [0.01] * 104)
    assert group_sizes(spread, 0.91, 8) == [1, 2, 4, 8]  # needs 10% back: from 1
    assert group_sizes(spread, 0.93, 8) == [4, 8]  # needs 30%: four layers add up to 31%
    assert group_sizes(spread, 0.93, 32) == [4, 8, 16, 32]
    # nothing ranked (out of time): the unranked layers, doubling
    assert group_sizes(_ranking([], unranked=[f"u{i}" for i in range(5)]), 0.95, 8) == \
        [1, 2, 4, 5]


def test_a_spread_loss_tries_groups_and_reports_why_it_stopped():
    """With the floor out of reach the run tries 1, 2, 4, 8 layers in float, not one more
    at a time (it stopped at float1 on the detector), and says why it stopped."""
    from compress.recipe import MixedPrecisionConfig
    from compress.search import Candidate, Outcome
    from export.mixed_precision import MixedPrecision as Hook

    asked = []
    evaluator = type("Fake", (), {"accuracy": lambda self, c, s: asked.append(c)
                                  or Outcome(c, metric=0.9)})()
    hook = Hook(evaluator, MixedPrecisionConfig())
    ranking = _ranking([0.18, 0.06, 0.04, 0.03] + [0.01] * 104)
    int8 = Candidate(0.0, 0, "m", make_target("onnx", "int8"))
    tried, reached, stopped = hook.keep_float(int8, None, ranking, 0.91)
    assert [len(c.keep_float) for c in tried] == [1, 2, 4, 8] and tried == asked
    assert len({c.id for c in tried}) == 4 and tried[3].keep_float == ("l0", "l1", "l2", "l3",
                                                                       "l4", "l5", "l6", "l7")
    assert not reached and stopped == "max_float_layers (8) reached"
    # half the loss to win back and the shares say 23 layers: only the limit is worth a file
    tried, _, _ = hook.keep_float(int8, None, ranking, 0.95)
    assert [len(c.keep_float) for c in tried] == [8]
    hook.out_of_time = lambda: True
    tried, _, stopped = hook.keep_float(int8, None, ranking, 0.95)
    assert len(tried) == 1 and stopped == "time budget"


@pytest.mark.parametrize(("quantize", "held"), [
    ({}, 120.0),                                            # on by default: 0.2 of 600 s
    ({"mixed_precision": {"enabled": False}}, 120.0),      # QAT still may run
    ({"mixed_precision": {"enabled": False}, "qat": {"enabled": False}}, 0.0),
    ({"precisions": ["fp32", "fp16"]}, 0.0),                # no int8: nothing to mix
    ({"mixed_precision": {"reserve_share": 0.5}}, 300.0),
])
def test_the_build_holds_time_back_only_when_mixing_can_run(quantize, held):
    assert recovery_reserve(Recipe.from_dict({"quantize": quantize}), 600.0) == held


def _qat_search(teacher, student, data, tmp_path, lr_scale=1.0):
    """Mixing off, QAT on (2 epochs at ``lr_scale`` of the distillation's rate), the ratio-0
    student ``student``, gated against the teacher's metric."""
    cal_x, val_x, val_y = data
    recipe = Recipe.from_dict({**ONNX_ONLY, "quantize": {
        **ONNX_ONLY["quantize"], "mixed_precision": {"enabled": False},
        "qat": {"epochs": 2, "lr_scale": lr_scale}}})
    x, y = tiny_tensors(512, 4)
    students = Students(recipe, StudentData(
        teacher=teacher, example=val_x[:1], validation=(val_x, val_y), metric=top1_accuracy,
        train=DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)))
    students.get(0.0).model = student
    eval_data = EvalData(example=val_x[:1], calibration=cal_x, val_x=val_x, val_y=val_y,
                         reference=to_numpy(teacher(val_x).detach()), metric=top1_accuracy)
    evaluator = Evaluator(recipe, eval_data, tmp_path, budget=Budget(3600))
    plan = SearchPlan(mixed=mixed_hook(recipe, evaluator, students))
    return run_search(get_profile("x86-64"), recipe, students, evaluator,
                      top1_accuracy(teacher(val_x), val_y), 0.02, plan=plan)


def test_qat_runs_when_mixing_cannot_and_its_file_is_measured_in_its_runtime(data, tmp_path):
    """Full int8 of an untrained student misses; QAT distils it from the teacher with fake
    quantization, and the QAT student's own ORT int8 file is measured like any candidate."""
    torch.manual_seed(0)
    teacher = fit_tiny_tensors(OutlierMLP(), 0, 150, lr=0.005)
    weak = OutlierMLP().eval()  # untrained: a guess per class
    result = _qat_search(teacher, weak, data, tmp_path)
    [run] = result.mixed_precision
    history = [h["metric"] for h in run["qat"]["history"]]
    assert "sensitivity" not in run and run["qat"]["best_epoch"] > 0, history
    assert run["candidates"] == ["r0/onnx/int8/ort-static/qat/t2"]
    qat = [o for o in result.outcomes if o.candidate.variant == "qat"]
    full = next(o for o in result.outcomes if o.candidate.id == "r0/onnx/int8/ort-static/t2")
    assert qat and all(o.metric is not None and o.latency_ms for o in qat)
    assert all(o.artifact.path.parent.name == "r0-qat" for o in qat)
    assert qat[0].metric > full.metric


def test_qat_at_epoch_0_still_makes_a_candidate_at_its_learnt_ranges(model, data, tmp_path):
    """A QAT that cannot move the weights (a vanishing rate) keeps epoch 0. Its file is not
    full int8's: the ranges are those QAT's observers averaged over training batches, not
    the calibration's extremes. So it is measured, and the report says training did not
    help."""
    result = _qat_search(model, copy.deepcopy(model), data, tmp_path, lr_scale=1e-9)
    [run] = result.mixed_precision
    assert run["qat"]["best_epoch"] == 0 and "did not raise" in run["qat"]["note"]
    assert run["candidates"] == ["r0/onnx/int8/ort-static/qat/t2"]
    qat = [o for o in result.outcomes if o.candidate.variant == "qat"]
    assert qat and all(o.metric is not None and o.latency_ms for o in qat)


@pytest.mark.parametrize(("reached", "loss", "why"), [
    (True, "concentrated", None),  # one layer was the loss: the mix is the answer
    (True, "spread", "the loss is spread over many layers"),
    (False, "spread", "no mix reached the floor"),
    (False, "concentrated", "no mix reached the floor"),
])
def test_qat_follows_a_mix_unless_it_reached_the_floor_of_a_concentrated_loss(reached, loss,
                                                                              why):
    """A mix at the floor of the selection split, when many layers share the loss, is at
    the edge of the gate's (the detector's one-float-layer file passed selection and failed
    the gate): QAT then makes a candidate to compete with it."""
    from compress.recipe import MixedPrecisionConfig, QatConfig
    from compress.search import Candidate
    from export.mixed_precision import MixedPrecision as Hook

    class Recorded(Hook):
        def mix(self, candidate, student, floor, quantizer, ends, figures):
            return [replace(candidate, keep_float=("l0",))], {"reached_floor": reached,
                                                               "loss": loss}

        def quantization_aware(self, candidate, end):
            return [replace(candidate, variant="qat")], {"epochs_run": 1}

    ends = []

    class Recorded(Recorded):
        def quantization_aware(self, candidate, end):
            ends.append(end)
            return super().quantization_aware(candidate, end)

    budget = Budget(600.0, clock=lambda: 0.0)
    evaluator = type("Fake", (), {"budget": budget})()
    students = type("S", (), {"tried": lambda self, ratio, name: False})()
    hook = Recorded(evaluator, MixedPrecisionConfig(), students=students, qat=QatConfig())
    int8 = Candidate(0.0, 0, "ort-static", make_target("onnx", "int8"))
    run = hook(int8, None, 0.9, runs_left=4)
    assert [c.variant for c in run.candidates] == (["", "qat"] if why else [""])
    assert (run.report["qat"]["why"].startswith(why) if why else "qat" not in run.report)
    # the ratio's first QAT serves every run: 0.4 of all 600 s left, not of this run's 150
    assert ends == ([0.4 * 600] if why else [])
