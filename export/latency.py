"""Latency of exported files on this host's runtime: batch-1 runs after a warm-up, with the
files measured round-robin in several rounds so load from other processes hits them all
alike. A file's latency is the median of its runs in its best round: a burst of load
from another process (which stalls multi-threaded runs most) spoils a round, not the
figure, and ratios between files measured together stay like for like."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress import progress
from compress.registry import Registry
from edge_agent.runtimes.threads import usable_cpus
from export.errors import ExportError
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
    return min(wanted, usable_cpus()) if cap else wanted


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


Measure = Callable[..., dict[Hashable, float]]


@dataclass(frozen=True)
class LatencySource:
    """Where latency figures come from: ``measure`` has ``benchmark``'s contract.

    ``on_device``: the figures are the device's own (an agent timed them there), so
    they rank candidates whatever the profile's ``host_timing`` says, and thread counts
    are not capped to this host's cores. ``device_profile``: the hardware profile that
    device says it is (None when unknown).
    """

    name: str
    description: str
    measure: Measure
    on_device: bool = False
    device_profile: str | None = None


@dataclass(frozen=True)
class SourceSettings:
    """What a source needs: the agent's URL and token (unused by ``host``)."""

    url: str | None = None
    token: str | None = None


LATENCY_SOURCES: Registry[Callable[[SourceSettings], LatencySource]] = Registry(
    "latency source", ExportError)


def host_description() -> str:
    """This build host, as the report names the source of host figures."""
    return f"host {platform.machine()} x{os.cpu_count()}"


@LATENCY_SOURCES.register("host")
def _host_source(settings: SourceSettings) -> LatencySource:
    return LatencySource("host", host_description(), benchmark)


@LATENCY_SOURCES.register("agent")
def _agent_source(settings: SourceSettings) -> LatencySource:
    from export.remote_latency import agent_info, describe_remote, remote_benchmark

    if not settings.url:
        raise ExportError("the agent latency source needs a URL: edgekit build --measure-on "
                          "http://DEVICE:PORT")

    def measure(timings: list[Timing], sample: np.ndarray, runs: int = 100, warmup: int = 10,
                rounds: int = 3, label: str = "benchmarking") -> dict[Hashable, float]:
        return remote_benchmark(timings, sample, url=settings.url, token=settings.token,
                                runs=runs, warmup=warmup, rounds=rounds, label=label)

    profile = agent_info(settings.url, settings.token)["device"].get("profile")
    return LatencySource("agent", describe_remote(settings.url, settings.token), measure,
                         on_device=True, device_profile=profile)


def latency_source(measure_on: str | None = None, token: str | None = None) -> LatencySource:
    """The agent at ``measure_on`` when given, else this host."""
    name = "agent" if measure_on else "host"
    return LATENCY_SOURCES.get(name)(SourceSettings(measure_on, token))
