"""Run an exported file in its real runtime (ONNX Runtime, LiteRT) on float inputs.

Quantized inputs and outputs are handled the way the device handles them
(``edge_agent.model.quantize`` / ``dequantize`` with the scale and zero-point the
runtime reports), so build-time figures are what the device will see.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from compress.outputs import Outputs, concat, from_list, take
from edge_agent.model import dequantize, quantize
from edge_agent.runtimes import Session, load_session
from export.errors import ExportError
from export.quiet import quiet


class ExportedModel:
    """An exported model file loaded in its runtime: one input, one or more outputs."""

    def __init__(self, fmt: str, path: Path, options: dict[str, Any]) -> None:
        self.format, self.path = fmt, Path(path)
        # A build host rarely has a device's GPU providers; the fallback warning is expected.
        ort_log = logging.getLogger("edge_agent.runtimes.onnx")
        level = ort_log.level
        ort_log.setLevel(logging.ERROR)
        try:
            with quiet():  # LiteRT prints delegate and absl banners on fd 2
                self.session: Session = load_session(fmt, self.path, options)
        finally:
            ort_log.setLevel(level)
        if len(self.session.inputs) != 1:
            raise ExportError(f"{self.path.name} has {len(self.session.inputs)} inputs; edgekit "
                              "build supports models with one input")
        self.input, self.outputs = self.session.inputs[0], self.session.outputs

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the file requires, or None when its batch is dynamic."""
        return self.input.shape[0] if self.input.shape else None

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Float inputs as the model's own input dtype (quantized when the input is)."""
        return quantize(np.asarray(x, dtype=np.float32), self.input)

    def run_raw(self, x: np.ndarray) -> list[np.ndarray]:
        """One run on already-converted inputs; every output in the model's own dtype."""
        return self.session.run([x])

    def predict(self, x: np.ndarray, batch: int = 64) -> Outputs:
        """Float32 outputs for float inputs, in batches the file accepts: an array, or a
        tuple of arrays for a model with several outputs (``compress.outputs``)."""
        step = self.fixed_batch or batch
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            if self.fixed_batch and len(chunk) < step:  # pad the last batch of a fixed file
                pad = np.repeat(chunk[-1:], step - len(chunk), axis=0)
                outs.append(take(self._predict(np.concatenate([chunk, pad])),
                                 slice(0, len(chunk))))
            else:
                outs.append(self._predict(chunk))
        return concat(outs)

    def _predict(self, x: np.ndarray) -> Outputs:
        return from_list([dequantize(raw, spec)
                          for raw, spec in zip(self.run_raw(self.feed(x)), self.outputs,
                                               strict=True)])
