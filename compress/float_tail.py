"""The output tail: the operations after a model's last weighted layer, left in float by the
int8 quantizers (recipe ``quantize.float_tail``, on by default).

A detector's tail is its decoding: sigmoids, the box arithmetic, the concatenation of boxes
and scores into one output. In int8 every box coordinate lands on a grid of 1/256 of the
output's range (0.4 px on a 96 px image), and a sigmoid's fixed 1/256 scale feeding a
reshape is what LiteRT refuses ("same scale constraint"). Those operations are a few
element-wise passes over the output, so keeping them float costs almost nothing: on the
digit detector, LiteRT's full int8 file scored mAP@0.5:0.95 0.823 with the tail in float
against 0.804 without (fp32: 0.827), and converted without leaving the sigmoids out. A
classifier whose last layer is a linear has no tail.

The last weighted layers' own outputs stay quantized (their int8 kernels need an output
scale); the tail reads them dequantized.
"""

from __future__ import annotations

from typing import Any

import torch

WEIGHTED_TARGETS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                    "linear", "matmul", "bmm", "addmm", "mm")


def _weighted(node: Any) -> bool:
    name = str(getattr(node.target, "__name__", node.target)).split(".")[0]
    return node.op == "call_function" and name in WEIGHTED_TARGETS


def fx_tail(graph_module: torch.fx.GraphModule) -> set[Any]:
    """The ``call_function`` nodes of an exported graph that no weighted node follows."""
    feeds: set[Any] = set()
    nodes = list(graph_module.graph.nodes)
    for node in reversed(nodes):
        if _weighted(node) or any(user in feeds for user in node.users):
            feeds.add(node)
    return {node for node in nodes if node.op == "call_function" and node not in feeds}


ONNX_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger"}


def onnx_tail(model: Any) -> list[str]:
    """The names of the nodes of an ONNX graph that no weighted node follows."""
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    feeds: set[int] = set()
    for node in reversed(model.graph.node):  # ONNX graphs are topologically sorted
        if node.op_type in ONNX_WEIGHTED or any(id(r) in feeds for out in node.output
                                                 for r in readers.get(out, [])):
            feeds.add(id(node))
    return [node.name for node in model.graph.node if id(node) not in feeds and node.name]
