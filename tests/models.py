"""Tiny real models for tests, made on the fly (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_tiny_onnx(path: Path, seed: int = 0, nan_above: float | None = None,
                   slow: int = 0) -> Path:
    """A small ONNX graph: flatten, MatMul, Add, Softmax.

    ``nan_above``: outputs turn NaN when the input's sum exceeds it (a model that
    passes its golden check but fails on live data). ``slow``: adds a chain of
    that many 512x512 matmuls fed by the input (same outputs, much slower).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 10)).astype(np.float32) * 0.3
    b = rng.standard_normal(10).astype(np.float32) * 0.1
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["p0"], axis=1)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    last = "p0"
    if nan_above is not None:
        inits.append(numpy_helper.from_array(np.array([nan_above], np.float32), "limit"))
        nodes += [helper.make_node("ReduceSum", ["flat"], ["total"], keepdims=1),
                  helper.make_node("Sub", ["limit", "total"], ["room"]),
                  helper.make_node("Sqrt", ["room"], ["root"]),
                  helper.make_node("Mul", ["root", "zero"], ["nan_or_zero"]),
                  helper.make_node("Add", [last, "nan_or_zero"], ["p1"])]
        inits.append(numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
        last = "p1"
    if slow:
        big = rng.standard_normal((512, 512)).astype(np.float32) / 512
        up = rng.standard_normal((64, 512)).astype(np.float32) / 64
        inits += [numpy_helper.from_array(big, "big"), numpy_helper.from_array(up, "up"),
                  numpy_helper.from_array(np.zeros(1, np.float32), "zero_s")]
        nodes.append(helper.make_node("MatMul", ["flat", "up"], ["wide"]))
        prev = "wide"
        for i in range(slow):
            nodes.append(helper.make_node("MatMul", [prev, "big"], [f"chain{i}"]))
            prev = f"chain{i}"
        nodes += [helper.make_node("ReduceSum", [prev], ["chain_sum"], keepdims=0),
                  helper.make_node("Mul", ["chain_sum", "zero_s"], ["nothing"]),
                  helper.make_node("Add", [last, "nothing"], ["p2"])]
        last = "p2"
    nodes.append(helper.make_node("Identity", [last], ["probs"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_tiny_tflite(path: Path, seed: int = 0) -> Path:
    """A small torch CNN converted to TFLite with litert-torch."""
    import litert_torch
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10), torch.nn.Softmax(dim=1),
    ).eval()
    edge = litert_torch.convert(model, (torch.zeros(1, 1, 8, 8),))
    path.parent.mkdir(parents=True, exist_ok=True)
    edge.export(str(path))
    return path
