"""Tiny real models for tests, made on the fly (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_tiny_onnx(path: Path, seed: int = 0, nan: bool = False) -> Path:
    """A small ONNX graph: flatten, Gemm, Softmax. ``nan=True`` poisons its weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 10)).astype(np.float32) * 0.3
    if nan:
        w[0, 0] = np.nan
    b = rng.standard_normal(10).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
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
