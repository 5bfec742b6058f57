"""LiteRT (TFLite) interpreter sessions: ai-edge-litert, else tflite-runtime."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bundle.manifest import Quantization, TensorSpec
from edge_agent.errors import ModelLoadError, first_line
from edge_agent.runtimes.base import Session, register_runtime
from edge_agent.runtimes.threads import fit_threads

log = logging.getLogger(__name__)
_GPU_DELEGATE_LIBS = ("libtensorflowlite_gpu_delegate.so",)


def _interpreter_module() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise ModelLoadError(
                "no TFLite interpreter installed; pip install ai-edge-litert (or tflite-runtime)"
            ) from exc
    return interpreter


def _spec(detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature", detail["shape"])
    shape = [int(d) if d >= 0 else None for d in signature]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quant = Quantization(float(scale), int(zero_point)) if scale else None
    return TensorSpec(name=detail["name"], shape=shape, dtype=np.dtype(detail["dtype"]).name,
                      quantization=quant)


def _delegates(module: Any, name: str) -> list[Any]:
    if name != "gpu":
        return []  # XNNPACK is LiteRT's built-in CPU path; "none" also runs there
    for lib in _GPU_DELEGATE_LIBS:
        try:
            return [module.load_delegate(lib)]
        except (ValueError, OSError):
            continue
    log.warning("TFLite GPU delegate not found; running on the CPU (XNNPACK)")
    return []


def _natural(name: str) -> tuple:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1)


def _signature_order(interpreter: Any, details: list[dict]) -> list[dict]:
    """Output details in the order the model returns them: the interpreter lists output
    tensors in graph order, which for several outputs need not be the exporter's
    ``output_0, output_1, ...``; the (single) signature names them in order."""
    if len(details) < 2:
        return details
    try:
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            return details
        key = next(iter(signatures))
        named = interpreter.get_signature_runner(key).get_output_details()
    except (ValueError, RuntimeError, AttributeError):  # no signature: keep graph order
        return details
    by_index = {d["index"]: d for d in details}
    ordered = [by_index.get(named[name]["index"]) for name in sorted(named, key=_natural)]
    return ordered if None not in ordered and len(ordered) == len(details) else details


class TfliteSession(Session):
    """One TFLite model loaded in the LiteRT interpreter."""

    backend = "litert"

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        module = _interpreter_module()
        self.threads = fit_threads(int(options.get("threads", 1)))
        try:
            self._it = module.Interpreter(
                model_path=str(path), num_threads=self.threads,
                experimental_delegates=_delegates(module, options.get("delegate", "xnnpack")))
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"LiteRT cannot load {path.name}: {first_line(exc, 300)}") from exc
        self._in = self._it.get_input_details()
        self._out = _signature_order(self._it, self._it.get_output_details())
        self.inputs = [_spec(d) for d in self._in]
        self.outputs = [_spec(d) for d in self._out]
        self._shapes = [tuple(int(n) for n in d["shape"]) for d in self._in]
        self._fixed_batch = False  # the graph's batch cannot be resized: one sample a run
        self._lock = threading.Lock()  # one interpreter: set/invoke/get must not interleave

    def _fit(self, index: int, shape: tuple) -> None:
        if tuple(self._in[index]["shape"]) != shape:
            self._it.resize_tensor_input(self._in[index]["index"], list(shape))
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()
            self._out = _signature_order(self._it, self._it.get_output_details())

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:  # one interpreter: set/invoke/get must not interleave across threads
            if not self._fixed_batch and self._resized(feeds):
                return self._invoke(feeds)
            outs = [self._invoke([f[j:j + 1] for f in feeds]) for j in range(len(feeds[0]))]
            return [np.concatenate(parts) for parts in zip(*outs)]

    def _resized(self, feeds: list[np.ndarray]) -> bool:
        """Fit the inputs to the feeds' shapes; False, with the file's own shapes back,
        when only the batch differs and the graph cannot take another (a transformer's
        reshapes fix it at export: XNNPACK then fails to prepare)."""
        try:
            for i, array in enumerate(feeds):
                self._fit(i, array.shape)
            return True
        except RuntimeError:
            per_sample = all(s[0] == 1 and tuple(a.shape[1:]) == s[1:]
                             for s, a in zip(self._shapes, feeds))
            for detail, shape in zip(self._in, self._shapes):  # the file's own, forced
                self._it.resize_tensor_input(detail["index"], list(shape))
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()
            self._out = _signature_order(self._it, self._it.get_output_details())
            if not per_sample:
                raise
            self._fixed_batch = True
            return False

    def _invoke(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        for i, array in enumerate(feeds):
            self._fit(i, array.shape)
        for detail, array in zip(self._in, feeds):
            self._it.set_tensor(detail["index"], array)
        self._it.invoke()
        return [self._it.get_tensor(d["index"]).copy() for d in self._out]


register_runtime("tflite")(TfliteSession)
