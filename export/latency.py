"""Latency of exported files on this host's runtime: batch-1 runs after a warm-up, with the
files measured round-robin in several rounds so load from other processes hits them all
alike. A file's latency is the median of its runs in its best round: a burst of load
from another process (which stalls multi-threaded runs most) spoils a round, not the
figure, and ratios between files measured together stay like for like."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress import progress
from export.runner import ExportedModel


@dataclass(frozen=True)
class Timing:
    """One file to time: its format, path and runtime options (threads among them)."""

    key: Hashable
    format: str
    path: Path
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, key: Hashable, fmt: str, path: Path, options: dict[str, Any]) -> Timing:
        """A timing with hashable options (lists become tuples)."""
        items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                             for k, v in options.items()))
        return cls(key, fmt, Path(path), items)

    def runtime_options(self) -> dict[str, Any]:
        """The options as the runtime loader wants them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}


def host_threads(wanted: int, cap: bool = True) -> int:
    """Threads to time with: the profile's count, capped at this host's cores when asked."""
    return min(wanted, os.cpu_count() or 1) if cap else wanted


def _time_runs(model: ExportedModel, raw: np.ndarray, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run_raw(raw)
        times.append(time.perf_counter() - start)
    return times


def benchmark(timings: list[Timing], sample: np.ndarray, runs: int = 100, warmup: int = 10,
              rounds: int = 3, label: str = "benchmarking") -> dict[Hashable, float]:
    """Latency (ms) of each file on one float sample ``[1, ...]``: best round's median."""
    models = {t: ExportedModel(t.format, t.path, t.runtime_options()) for t in timings}
    raws = {t: m.feed(sample[:1]) for t, m in models.items()}
    for t, m in models.items():
        _time_runs(m, raws[t], warmup)
    medians: dict[Timing, list[float]] = {t: [] for t in timings}
    per_round = max(1, runs // rounds)
    steps = [(r, t) for r in range(rounds) for t in timings]
    for _, t in progress.track(steps, label, total=len(steps)):
        medians[t].append(statistics.median(_time_runs(models[t], raws[t], per_round)))
    return {t.key: min(v) * 1e3 for t, v in medians.items()}
