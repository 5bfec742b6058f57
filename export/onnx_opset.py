"""Bring a dynamo-exported ONNX model (opset 18) down to opset 17 when a profile asks for it.

torch's dynamo exporter writes opset 18 or newer, and both its converter and onnx's
C++ version converter fail on the Reduce* operators (their ``axes`` moved from an
attribute to an input in opset 18). This moves constant ``axes`` back into the
attribute, refuses operators whose opset-18 form has no opset-17 equivalent, and
checks the result against the opset-17 schemas.
"""

from __future__ import annotations

from typing import Any

from edge_agent.errors import first_line
from export.errors import ExportError

_AXES_TO_ATTRIBUTE = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                      "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"}
_CHANGED_IN_18 = {"Split", "Pad", "Resize", "ScatterElements", "ScatterND", "LpPool",
                  "CenterCropPad", "Col2Im", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
                  "BitwiseNot", "GroupNormalization", "OptionalGetElement", "OptionalHasElement"}
_NEW_IN_18 = {"antialias", "keep_aspect_ratio_policy"}  # Resize's, checked at their defaults
LOWEST_DOWNGRADE = 17


def constants(graph: Any) -> dict[str, Any]:
    """The graph's initializers and Constant outputs, by name, as numpy arrays."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _move_axes(node: Any, constants: dict[str, Any]) -> None:
    from onnx import helper

    if len(node.input) < 2 or not node.input[1]:
        return
    if node.input[1] not in constants:
        raise ExportError(f"cannot express {node.op_type} with computed axes at ONNX opset 17")
    axes = [int(a) for a in constants[node.input[1]].reshape(-1)]
    noop = [a for a in node.attribute if a.name == "noop_with_empty_axes"]
    if noop and noop[0].i and not axes:
        raise ExportError(f"cannot express {node.op_type}(noop_with_empty_axes) at opset 17")
    for attr in noop:
        node.attribute.remove(attr)
    del node.input[1]
    if axes:
        node.attribute.append(helper.make_attribute("axes", axes))


def _same_below_18(node: Any) -> bool:
    """Whether an operator opset 18 changed uses none of what it added, so its node means
    the same at 17: Resize without ``antialias``, ``axes`` or a keep-aspect-ratio policy
    (a detector neck's nearest upsampling), Pad without its ``axes`` input, Split without
    ``num_outputs``."""
    from onnx import helper

    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Resize":
        return not values.get("antialias", 0) and "axes" not in values \
            and values.get("keep_aspect_ratio_policy", b"stretch") == b"stretch"
    if node.op_type == "Pad":
        return len(node.input) < 4 or not node.input[3]
    if node.op_type == "Split":
        return "num_outputs" not in values
    return False


def downgrade(model: Any, opset: int) -> Any:
    """``model`` (opset 18) rewritten for ``opset`` 17; ExportError when it cannot be."""
    import onnx

    if opset < LOWEST_DOWNGRADE:
        raise ExportError(f"cannot bring a dynamo export below opset {LOWEST_DOWNGRADE} "
                          f"(asked for {opset})")
    graph, values = model.graph, constants(model.graph)
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _CHANGED_IN_18:
            if not _same_below_18(node):
                raise ExportError(f"operator {node.op_type} has no opset-{opset} form here")
            for attribute in [a for a in node.attribute if a.name in _NEW_IN_18]:
                node.attribute.remove(attribute)  # at their defaults: 17 has no such names
        if node.op_type in _AXES_TO_ATTRIBUTE:
            _move_axes(node, values)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"model does not validate at ONNX opset {opset}: "
                          f"{first_line(exc)}") from exc
    return model
