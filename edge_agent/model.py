"""A bundle's model, loaded in its runtime, proven by its golden check, ready to predict.

Quantized inputs and outputs are handled here from the manifest: callers feed
float arrays and get float arrays back, whatever the model's own I/O dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.bundle.manifest import Manifest, TensorSpec
from edge_agent.bundle.reader import OpenedBundle
from edge_agent.errors import ModelLoadError
from edge_agent.golden import GoldenResult, load_arrays
from edge_agent.runtimes import Session, load_session
from edge_agent.tasks.plugin import TaskPlugin, plugin_for


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float input -> the model's input dtype, via the manifest's scale/zero-point."""
    dtype = np.dtype(spec.dtype)
    if spec.quantization is None or dtype.kind not in "iu":
        return x.astype(dtype, copy=False)
    q = np.round(x / spec.quantization.scale) + spec.quantization.zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The model's output -> float32, via the manifest's scale/zero-point."""
    if spec.quantization is None or y.dtype.kind not in "iu":
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - spec.quantization.zero_point)
            * np.float32(spec.quantization.scale))


def _check_specs(what: str, declared: list[TensorSpec], actual: list[TensorSpec]) -> None:
    if len(declared) != len(actual):
        raise ModelLoadError(f"model has {len(actual)} {what}s; the manifest declares "
                             f"{len(declared)}")
    for d, a in zip(declared, actual):
        if d.dtype != a.dtype or len(d.shape) != len(a.shape):
            raise ModelLoadError(f"model {what} {a.name!r} is {a.dtype}{a.shape}; the manifest "
                                 f"declares {d.dtype}{d.shape}")


@dataclass
class LoadedModel:
    """A verified model: its manifest, its runtime session and its golden result."""

    manifest: Manifest
    session: Session
    golden: GoldenResult | None
    task: TaskPlugin
    """The task's plug-in: post-processing, answers, telemetry block, golden verdict."""

    @classmethod
    def load(cls, bundle: OpenedBundle, require_golden: bool = True) -> LoadedModel:
        """Load the bundle's model and refuse it if its golden output does not reproduce."""
        m = bundle.manifest
        session = load_session(m.target.format, bundle.path("model"), m.target.runtime)
        _check_specs("input", m.inputs, session.inputs)
        _check_specs("output", m.outputs, session.outputs)
        golden = None
        task = plugin_for(m)
        if m.golden is not None:
            feeds = load_arrays(bundle.path(m.golden.input_role))
            expected = load_arrays(bundle.path(m.golden.output_role))
            try:
                actual = session.run(feeds)
            except Exception as exc:  # runtimes raise their own error types
                raise ModelLoadError(f"golden input failed to run: {exc}") from exc
            golden = task.golden(expected, actual)
            if not golden.ok:
                raise ModelLoadError(
                    f"golden check failed: {golden.problem()}; this device does not compute "
                    "what the build computed — do not serve this model")
        elif require_golden:
            raise ModelLoadError("bundle has no golden input/output; rebuild or repack it")
        return cls(manifest=m, session=session, golden=golden, task=task)

    def predict(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Float arrays in (one per model input), float32 arrays out."""
        if self._float_io:  # the common case: nothing to convert
            return self.session.run(list(inputs))
        feeds = [quantize(np.asarray(x), s) for x, s in zip(inputs, self.manifest.inputs)]
        outs = self.session.run(feeds)
        return [dequantize(y, s) for y, s in zip(outs, self.manifest.outputs)]

    def __post_init__(self) -> None:
        specs = self.manifest.inputs + self.manifest.outputs
        # every input and output float32 without quantization: nothing to convert
        self._float_io = all(s.dtype == "float32" and s.quantization is None for s in specs)
