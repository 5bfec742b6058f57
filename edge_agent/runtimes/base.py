"""The runtime contract: load a model file, describe its tensors, run it.

Each format registers one loader; the agent and the build side look loaders up
by the bundle's format, never with an if-chain on names.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_agent.bundle.manifest import TensorSpec
from edge_agent.errors import ModelLoadError

Loader = Callable[[Path, dict[str, Any]], "Session"]
_LOADERS: dict[str, Loader] = {}


def register_runtime(fmt: str) -> Callable[[Loader], Loader]:
    """Register the loader of one model format (``onnx``, ``tflite``)."""
    def wrap(loader: Loader) -> Loader:
        _LOADERS[fmt] = loader
        return loader
    return wrap


def load_session(fmt: str, path: Path, options: dict[str, Any]) -> Session:
    """Load ``path`` with the runtime registered for ``fmt``."""
    from edge_agent import runtimes  # noqa: F401  (registers the built-in loaders)

    if fmt not in _LOADERS:
        raise ModelLoadError(f"no runtime for format {fmt!r}; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[fmt](Path(path), dict(options))


def registered_formats() -> list[str]:
    """The model formats a runtime is registered for."""
    from edge_agent import runtimes  # noqa: F401

    return sorted(_LOADERS)


class Session(abc.ABC):
    """A loaded model. ``run`` takes and returns arrays in the model's own dtypes."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    backend: str
    threads: int = 0  # interpreter threads it runs with (``threads.fit_threads``); 0: default

    @abc.abstractmethod
    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; ``feeds`` in the order of ``inputs``."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the runtime's resources (optional)."""
