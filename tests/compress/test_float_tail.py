"""The output tail (``compress/float_tail.py``): the operations after the last weighted layer
are found in torch's exported graph and in ONNX, a classifier ending in a linear has none,
and the int8 files of both runtimes leave them in float: a detector-style head then
converts in LiteRT without leaving anything else out, and its boxes come out closer to
float than with the tail in int8."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from compress.float_tail import fx_tail, onnx_tail
from export.runner import ExportedModel
from tests.compress.tiny import tiny_tensors, trained_tiny_model
from tests.export.conftest import make_job, make_target
from tests.export.test_qat_files import SigmoidHead


def _targets(nodes) -> set[str]:
    return {str(getattr(n.target, "__name__", n.target)).split(".")[0] for n in nodes}


def test_the_tail_of_a_detector_head_is_its_decoding():
    model = SigmoidHead().eval()
    graph = torch.export.export(model, (torch.randn(1, 1, 32, 32),)).module()
    tail = _targets(fx_tail(graph))
    assert {"sigmoid", "mul", "cat"} <= tail
    assert not tail & {"conv2d", "silu"}


def test_a_classifier_ending_in_a_linear_has_no_tail():
    graph = torch.export.export(trained_tiny_model().eval(), (tiny_tensors(1, 0)[0],)).module()
    assert fx_tail(graph) == set()


def test_the_onnx_tail_is_found_the_same_way(tmp_path):
    import onnx

    from export.onnx import dynamo_export

    path = tmp_path / "head.onnx"
    dynamo_export(SigmoidHead().eval(), torch.randn(1, 1, 32, 32), path, 17)
    model = onnx.load(str(path))
    names = set(onnx_tail(model))
    kinds = {n.op_type for n in model.graph.node if n.name in names}
    assert {"Sigmoid", "Mul", "Concat"} <= kinds and "Conv" not in kinds


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    model = SigmoidHead().eval()
    x = torch.randn(64, 1, 32, 32)
    with torch.no_grad():
        reference = model(x).numpy()
    return model, x, reference


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_files_keep_the_tail_in_float_and_come_closer_to_float(head, tmp_path, fmt):
    from export.registry import quantizers_for

    model, x, reference = head
    method = {"tflite": "litert-pt2e", "onnx": "ort-static"}[fmt]
    [quantizer] = [q for q in quantizers_for(fmt, "int8") if q.name == method]
    job = make_job(model, x[:1], x[:32], make_target(fmt, "int8"), tmp_path)
    errors = {}
    for tail in (True, False):
        path = quantizer.run(replace(job, options={"float_tail": tail}),
                             tmp_path / f"tail{tail}{'.tflite' if fmt == 'tflite' else '.onnx'}")
        errors[tail] = np.abs(ExportedModel(fmt, path, {}).predict(x.numpy()) - reference).mean()
    assert errors[True] < errors[False]


def test_litert_converts_a_float_tail_head_without_leaving_other_ops_out(head, tmp_path):
    from export import tflite

    model, x, _ = head
    job = make_job(model, x[:1], x[:16], make_target("tflite", "int8"), tmp_path)
    tflite._pt2e_once(replace(job, options={"float_tail": True}), tmp_path / "a.tflite",
                      True, False, ())  # the first rung: nothing left out
    with pytest.raises(Exception, match=tflite.SAME_SCALE):
        tflite._pt2e_once(job, tmp_path / "b.tflite", True, False, ())
