"""Read what a model file is: its format (by suffix) and the precision it computes in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from edge_agent.errors import BundleError
from edge_agent.runtimes.base import Session

FORMAT_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite"}
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
              "ConvInteger", "MatMulInteger"}
_DYNAMIC_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}


def format_of(path: Path) -> str:
    """The model format a file's suffix names, or a clear error."""
    fmt = FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMAT_BY_SUFFIX))
        raise BundleError(f"{path}: unknown model file type; expected one of {known}")
    return fmt


# ONNX is a protobuf; the few fields precision needs are read straight off the wire, so
# `bundle pack` works where only the agent extra is installed (onnxruntime, no `onnx`).
# Field numbers from onnx.proto (stable since IR version 1):
_MODEL_GRAPH = 7          # ModelProto.graph
_GRAPH_NODE = 1           # GraphProto.node
_GRAPH_INITIALIZER = 5    # GraphProto.initializer
_NODE_OP_TYPE = 4         # NodeProto.op_type
_TENSOR_DATA_TYPE = 2     # TensorProto.data_type
_ONNX_FLOAT16 = 10        # TensorProto.DataType.FLOAT16


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) of each field in buf[start:end]; a
    varint's value comes as its start, a length-delimited field as its [start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value, pos
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("field runs past its message")
            yield number, wire, pos, pos + size
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:  # groups (3, 4) are not in onnx.proto
            raise ValueError(f"unexpected wire type {wire}")
    if pos != end:
        raise ValueError("field runs past its message")


def _onnx_graph_facts(buf: bytes) -> tuple[set[str], set[int]]:
    """The main graph's op types and its initializers' data types (what onnx.load +
    model.graph.node / .initializer give, without needing the onnx package)."""
    ops: set[str] = set()
    dtypes: set[int] = set()
    for number, wire, g_start, g_end in _fields(buf, 0, len(buf)):
        if number != _MODEL_GRAPH or wire != 2:
            continue
        for field, kind, start, end in _fields(buf, g_start, g_end):
            if field == _GRAPH_NODE and kind == 2:
                for f, k, s, e in _fields(buf, start, end):
                    if f == _NODE_OP_TYPE and k == 2:
                        ops.add(bytes(buf[s:e]).decode("utf-8", "replace"))
            elif field == _GRAPH_INITIALIZER and kind == 2:
                for f, k, value, _ in _fields(buf, start, end):
                    if f == _TENSOR_DATA_TYPE and k == 0:
                        dtypes.add(value)
    return ops, dtypes


def _onnx_precision(path: Path, session: Session) -> str:
    try:
        ops, dtypes = _onnx_graph_facts(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the ONNX graph ({exc}); pass --precision "
                          "to say what it computes in") from exc
    if ops & _DYNAMIC_OPS and "DynamicQuantizeLinear" in ops:
        return "int8-dynamic"
    if ops & _QUANT_OPS:
        return "int8"
    if _ONNX_FLOAT16 in dtypes:
        return "fp16"
    return "fp32"


def _quantized(detail: dict) -> bool:
    per_channel = detail.get("quantization_parameters", {}).get("scales", ())
    return bool(detail["quantization"][0]) or len(per_channel) > 0


def _tflite_precision(path: Path, session: Session) -> str:
    import numpy as np

    it = session._it  # type: ignore[attr-defined]
    details = it.get_tensor_details()
    kinds = {np.dtype(d["dtype"]).name for d in details}
    if any(np.dtype(d["dtype"]).name in ("int8", "uint8") and _quantized(d) for d in details):
        # Static int8 quantizes activations (int8 I/O or QUANTIZE ops); dynamic-range
        # int8 only stores int8 weights and computes on float activations.
        io_quantized = any(np.dtype(d["dtype"]).kind in "iu" for d in it.get_input_details())
        ops = {op["op_name"] for op in it._get_ops_details()}
        return "int8" if io_quantized or "QUANTIZE" in ops else "int8-dynamic"
    if "float16" in kinds:
        return "fp16"
    return "fp32"


PRECISION_READERS: dict[str, Callable[[Path, Session], str]] = {
    "onnx": _onnx_precision,
    "tflite": _tflite_precision,
}


def precision_of(fmt: str, path: Path, session: Session) -> str:
    """The precision a loaded model computes in: fp32, fp16, int8 or int8-dynamic."""
    return PRECISION_READERS[fmt](path, session)
