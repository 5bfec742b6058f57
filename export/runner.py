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

from edge_agent.model import dequantize, quantize
from edge_agent.runtimes import Session, load_session
from export.errors import ExportError
from export.quiet import quiet


class ExportedModel:
    """An exported model file loaded in its runtime, one input and one output."""

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
        if len(self.session.inputs) != 1 or len(self.session.outputs) != 1:
            raise ExportError(f"{self.path.name} has {len(self.session.inputs)} inputs and "
                              f"{len(self.session.outputs)} outputs; edgekit build supports "
                              "models with one of each")
        self.input, self.output = self.session.inputs[0], self.session.outputs[0]

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the file requires, or None when its batch is dynamic."""
        return self.input.shape[0] if self.input.shape else None

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Float inputs as the model's own input dtype (quantized when the input is)."""
        return quantize(np.asarray(x, dtype=np.float32), self.input)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """One run on already-converted inputs; the output in the model's own dtype."""
        return self.session.run([x])[0]

    def predict(self, x: np.ndarray, batch: int = 64) -> np.ndarray:
        """Float32 outputs for float inputs, in batches the file accepts."""
        step = self.fixed_batch or batch
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            if self.fixed_batch and len(chunk) < step:  # pad the last batch of a fixed file
                pad = np.repeat(chunk[-1:], step - len(chunk), axis=0)
                outs.append(self._predict(np.concatenate([chunk, pad]))[:len(chunk)])
            else:
                outs.append(self._predict(chunk))
        return np.concatenate(outs)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return dequantize(self.run_raw(self.feed(x)), self.output)
