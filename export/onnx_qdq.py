"""Make a QDQ file torch exported (a QAT graph, ``export/onnx.py``) take ONNX Runtime's
fast int8 kernels.

torch's exporter writes what PT2E's ``convert_pt2e`` holds: float weights quantized at run
time (``QuantizeLinear`` -> ``Clip`` -> ``DequantizeLinear``) and int8 activations with zero
point 0. ONNX Runtime fuses QDQ groups into ``QLinearConv`` and friends only for uint8
activations on x86 (int8 ones only on ARM), so that file ran 3.6x slower than
``quantize_static``'s on the detector. This rewrites it into the form ``quantize_static``
writes, computing the same function:

- each quantized weight becomes an int8 initializer (the quantize and clip done once);
- each int8 activation with zero point ``z`` becomes uint8 with zero point ``z + 128``:
  ``clamp(round(x / s) + z + 128, 0, 255)`` is ``clamp(round(x / s) + z, -128, 127) + 128``,
  and the dequantize subtracts the same 128, so every value is the one it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from export.errors import ExportError
from export.onnx_opset import constants

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"


def _axis(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _quantized_weight(weight: np.ndarray, scale: np.ndarray, zero: np.ndarray,
                      axis: int, bounds: tuple[float, float] | None) -> np.ndarray:
    shape = [1] * weight.ndim
    if scale.ndim:  # per channel along ``axis``
        shape[axis] = -1
    low, high = (-128, 127) if bounds is None else bounds
    q = np.round(weight / scale.reshape(shape)) + zero.reshape(shape).astype(np.float64)
    return np.clip(q, max(low, -128), min(high, 127)).astype(np.int8)


def _keep_only(field: Any, keep: Any) -> None:
    kept = [item for item in field if keep(item)]
    del field[:]
    field.extend(kept)


def fast_qdq(model: Any) -> tuple[Any, dict[str, int]]:
    """``model`` rewritten in place as above, and what changed (``weights`` folded,
    ``activations`` made uint8). Raises ``ExportError`` on a QDQ form it does not know."""
    from onnx import numpy_helper

    graph, values = model.graph, constants(model.graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop, weights, folded = set(), 0, set()
    for node in graph.node:
        if node.op_type != QUANTIZE or node.input[0] not in values:
            continue
        scale, zero = values[node.input[1]], values[node.input[2]]
        out, users = node.output[0], consumers.get(node.output[0], [])
        bounds = None
        if len(users) == 1 and users[0].op_type == "Clip":  # the exporter's quant_min/max
            clip = users[0]
            bounds = (float(values[clip.input[1]]), float(values[clip.input[2]]))
            drop.add(id(clip))
            out = clip.output[0]
        q = _quantized_weight(values[node.input[0]], scale, zero, _axis(node), bounds)
        graph.initializer.append(numpy_helper.from_array(q, out))
        drop.add(id(node))
        folded.add(out)
        weights += 1
    activations = 0
    retyped: set[str] = set()
    unsigned: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in (QUANTIZE, DEQUANTIZE) or id(node) in drop \
                or node.input[0] in folded or len(node.input) < 3:
            continue
        zero = values.get(node.input[2])
        if zero is None:
            raise ExportError(f"{node.op_type} {node.name or node.output[0]} has a computed zero "
                              "point; edgekit cannot make this QDQ file fast")
        if zero.dtype != np.int8:
            continue
        if node.input[2] not in unsigned:
            name = f"{node.input[2]}_u8"
            graph.initializer.append(numpy_helper.from_array(
                (zero.astype(np.int16) + 128).astype(np.uint8), name))
            unsigned[node.input[2]] = name
        node.input[2] = unsigned[node.input[2]]
        if node.op_type == QUANTIZE:
            activations += 1
            retyped.add(node.output[0])
    kept = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    _keep_only(graph.value_info, lambda info: info.name not in retyped)  # now uint8
    used = {name for node in graph.node for name in node.input}
    _keep_only(graph.initializer, lambda init: init.name in used)  # the float weights
    return model, {"weights": weights, "activations": activations}
