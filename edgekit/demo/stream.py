"""The demo's traffic: one thread per device sends held-out inputs to the agent's HTTP API
and records what came back next to the truth, which the demo keeps to itself.

``Labels`` is the stand-in for a labelling step (people annotating what devices sent
home): it maps an input's bytes to its truth (a class index, a list of boxes), and the
retraining job looks the collected samples up in it. Nothing on the device or in the
cloud sees the labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.bundle.archive import atomic_write
from edgekit.demo.settings import DeviceSpec

if TYPE_CHECKING:
    from edgekit.demo.tasks.base import Answer


def input_key(x: np.ndarray) -> str:
    """The key of one input: sha256 of its float32 bytes (its shape left out)."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


class Labels:
    """The truth of every input the demo sent, by ``input_key`` (JSON values: a class
    index, a list of ``[class, x1, y1, x2, y2]`` rows...)."""

    def __init__(self) -> None:
        self._labels: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, x: np.ndarray, label: Any) -> None:
        with self._lock:
            self._labels[input_key(x)] = label

    def save(self, path: Path) -> Path:
        """Write ``{key: label}`` as JSON (atomically)."""
        with self._lock:
            doc = dict(self._labels)
        atomic_write(path, json.dumps(doc).encode())
        return path


@dataclass(frozen=True)
class Observation:
    """One answer: when, where, the truth, the answer (and its confidence), and what was
    served."""

    t: float
    device: str
    truth: Any
    answer: Any
    confidence: float
    version: str
    shifted: bool
    pool: str


def post_npy(port: int, x: np.ndarray, timeout: float = 10.0) -> dict[str, Any]:
    """The agent's JSON answer to one input sent to ``/v1/predict`` as .npy."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x, dtype=np.float32))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", buf.getvalue(),
                                 {"Content-Type": "application/x-npy",
                                  "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Pools:
    """The inputs a stream draws from, by name, with their truths (JSON values), each also
    precomputed shifted."""

    def __init__(self, pools: dict[str, tuple[np.ndarray, list[Any]]], shift: str,
                 mean: float, std: float) -> None:
        from edgekit.demo.shifts import apply

        self.plain = pools
        self.shifted = {name: (apply(shift, x, mean, std, seed=i), y)
                        for i, (name, (x, y)) in enumerate(pools.items())}

    def get(self, name: str, shifted: bool) -> tuple[np.ndarray, list[Any]]:
        return (self.shifted if shifted else self.plain)[name]


class DeviceStream(threading.Thread):
    """Sends one device's stream at ``rate_hz`` until stopped; ``shifted`` and ``pool``
    may be changed while it runs."""

    def __init__(self, spec: DeviceSpec, port: int, ask: Callable[[int, np.ndarray], Answer],
                 pools: Pools, labels: Labels, rate_hz: float, sink: list[Observation],
                 lock: threading.Lock, pool: str, seed: int = 0) -> None:
        super().__init__(name=f"stream-{spec.device_id}", daemon=True)
        self.spec, self.port, self.ask = spec, port, ask
        self.pools, self.labels = pools, labels
        self.period = 1.0 / rate_hz
        self.sink, self.lock = sink, lock
        self.pool, self.shifted = pool, False
        self.rng = np.random.default_rng(seed)
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            pool, shifted = self.pool, self.shifted
            xs, ys = self.pools.get(pool, shifted)
            i = int(self.rng.integers(len(ys)))
            x, truth = xs[i:i + 1], ys[i]
            self.labels.add(x, truth)
            try:
                got = self.ask(self.port, x)
            except (OSError, ValueError, KeyError, TypeError):
                self.errors += 1  # an agent restarting or swapping models: try the next one
            else:
                obs = Observation(time.time(), self.spec.device_id, truth, got.answer,
                                  got.confidence, got.version, shifted, pool)
                with self.lock:
                    self.sink.append(obs)
            next_at += self.period
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()


def accuracy(observations: list[Observation]) -> float | None:
    """Share of correct answers, or None for no observations."""
    if not observations:
        return None
    return sum(o.answer == o.truth for o in observations) / len(observations)


def mean_confidence(observations: list[Observation]) -> float | None:
    """Mean confidence, or None for no observations."""
    if not observations:
        return None
    return float(np.mean([o.confidence for o in observations]))
