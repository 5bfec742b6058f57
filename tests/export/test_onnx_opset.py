"""Dynamo exports (opset 18) brought down to opset 17: Reduce* axes move back to attributes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.errors import ExportError
from export.onnx import dynamo_export
from export.onnx_opset import downgrade
from export.runner import ExportedModel


def test_dynamo_export_at_17_validates_and_matches(tmp_path, tiny_teacher, tiny_validation):
    import onnx

    x = tiny_validation[0]
    path = tmp_path / "m.onnx"
    dynamo_export(tiny_teacher, x[:1], path, 17)
    model = onnx.load(str(path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    means = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    assert means and all(len(n.input) == 1 for n in means)
    outputs = ExportedModel("onnx", path, {"threads": 1}).predict(x.numpy())
    with torch.no_grad():
        assert np.abs(outputs - tiny_teacher(x).numpy()).max() < 1e-4


def test_below_17_is_refused():
    import onnx

    with pytest.raises(ExportError, match="below opset 17"):
        downgrade(onnx.ModelProto(), 13)


def test_operators_changed_in_18_are_refused():
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=2)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("a", TensorProto.FLOAT,
                                                                     [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ExportError, match="Split has no opset-17 form"):
        downgrade(onnx.ModelProto.FromString(model.SerializeToString()), 17)
