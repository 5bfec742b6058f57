"""ONNX Runtime sessions with the execution providers a profile asks for."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bundle.manifest import TensorSpec
from edge_agent.errors import ModelLoadError, first_line
from edge_agent.runtimes.base import Session, register_runtime
from edge_agent.runtimes.threads import fit_threads

log = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}


def _spec(arg: Any) -> TensorSpec:
    shape: list[int | None] = [d if isinstance(d, int) else None for d in arg.shape]
    if arg.type not in _ORT_DTYPES:
        raise ModelLoadError(f"tensor {arg.name!r} has type {arg.type}, which edgekit cannot feed")
    return TensorSpec(name=arg.name, shape=shape, dtype=_ORT_DTYPES[arg.type])


def choose_providers(wanted: list[str]) -> list[str]:
    """The wanted providers that this onnxruntime build has, CPU last as the fallback."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning("onnxruntime here lacks %s; running with %s", ", ".join(missing),
                    ", ".join(chosen or ["CPUExecutionProvider"]))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxSession(Session):
    """One ONNX model loaded in ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError("onnxruntime is not installed; pip install onnxruntime") from exc
        so = ort.SessionOptions()
        self.threads = fit_threads(int(options.get("threads", 0)))
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = choose_providers(list(options.get("providers", ["CPUExecutionProvider"])))
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            reason = first_line(exc, 300)
            raise ModelLoadError(f"onnxruntime cannot load {path.name}: {reason}") from exc
        self.providers = self._sess.get_providers()
        self.inputs = [_spec(a) for a in self._sess.get_inputs()]
        self.outputs = [_spec(a) for a in self._sess.get_outputs()]
        self._in_names = [s.name for s in self.inputs]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        return self._sess.run(None, dict(zip(self._in_names, feeds)))


register_runtime("onnx")(OnnxSession)
