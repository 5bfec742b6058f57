"""A model a format cannot express fails that target with a message naming the operator."""

from __future__ import annotations

import pytest

from export.errors import ExportError, UnsupportedOperatorError, export_failure, operator_in
from export.registry import exporter_for
from tests.compress.tiny import bucket_model
from tests.export.conftest import make_target


@pytest.mark.parametrize("message, expected", [
    ("Lowering not found: aten.bucketize.Tensor\n\nWhile executing", "aten.bucketize.Tensor"),
    ("Exporting the operator 'aten::erfinv' to ONNX opset version 17 is not supported",
     "aten.erfinv"),
    ("<class 'DispatchError'>: No ONNX function found for <OpOverload(op='prims.erf_inv', "
     "overload='default')>", "prims.erf_inv"),
    ("error: failed to legalize operation 'tfl.custom_op' that was", "tfl.custom_op"),
    ("Error when translating node %x : call_function[target=torch.ops.aten.cummax.default]",
     "aten.cummax.default"),
    ("something unrelated went wrong", None),
])
def test_operator_is_found_in_exporter_messages(message, expected):
    assert operator_in(message) == expected


def test_failure_without_an_operator_keeps_the_first_line():
    error = export_failure("onnx", RuntimeError("\x1b[96mboom\x1b[0m\nmore detail"))
    assert type(error) is ExportError and str(error) == "onnx export failed: RuntimeError: boom"


def test_operator_named_in_a_chained_cause():
    try:
        try:
            raise ValueError("Lowering not found: aten.erfinv.default")
        except ValueError as inner:
            raise RuntimeError("conversion failed") from inner
    except RuntimeError as outer:
        error = export_failure("tflite", outer)
    assert isinstance(error, UnsupportedOperatorError) and error.operator == "aten.erfinv.default"


@pytest.mark.slow
def test_tflite_cannot_express_bucketize_but_onnx_can(tmp_path, tiny_validation):
    model, x = bucket_model(), tiny_validation[0][:1]
    with pytest.raises(UnsupportedOperatorError) as info:
        exporter_for("tflite").export(model, x, make_target("tflite", "fp32"),
                                      tmp_path / "m.tflite")
    message = str(info.value)
    assert message.startswith("tflite cannot express operator aten.bucketize")
    assert "\n" not in message
    assert not (tmp_path / "m.tflite").exists()
    exporter_for("onnx").export(model, x, make_target("onnx", "fp32"), tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 0
