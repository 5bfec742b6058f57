"""Read what a model file is: its format (by suffix) and the precision it computes in."""

from __future__ import annotations

from collections.abc import Callable
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


def _onnx_precision(path: Path, session: Session) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    if ops & _DYNAMIC_OPS and "DynamicQuantizeLinear" in ops:
        return "int8-dynamic"
    if ops & _QUANT_OPS:
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer):
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
