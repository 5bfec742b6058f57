"""Dynamo exports (opset 18) brought down to opset 17: Reduce* axes move back to attributes;
operators opset 18 changed stay when they use nothing it added, else are refused."""

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


class Upsample(torch.nn.Module):
    """A detector neck's nearest upsampling, concatenated with its input's neighbour."""

    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(1, 2, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = self.down(x)
        up = torch.nn.functional.interpolate(small, scale_factor=2.0, mode="nearest")
        return torch.cat([x, up], 1).mean((2, 3))


def test_a_resize_using_nothing_new_in_18_is_kept_at_17(tmp_path):
    import onnx

    torch.manual_seed(0)
    model, x = Upsample().eval(), torch.randn(3, 1, 8, 8)
    path = tmp_path / "m.onnx"
    dynamo_export(model, x[:1], path, 17)
    exported = onnx.load(str(path))
    assert {o.domain: o.version for o in exported.opset_import}[""] == 17
    assert any(n.op_type == "Resize" for n in exported.graph.node)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(ExportedModel("onnx", path, {"threads": 1}).predict(x.numpy())
                  - expected).max() < 1e-5


def test_a_resize_with_antialias_is_refused():
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", antialias=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, 0.5, 0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ExportError, match="Resize has no opset-17 form"):
        downgrade(onnx.ModelProto.FromString(model.SerializeToString()), 17)
