"""Telemetry windows: device messages summed into the counts the drift scores compare.

A ``Telemetry`` message reports one device interval ending at its ``ts``; a drift
window ``[start, end)`` holds the messages whose ``ts`` falls in it. Counts add up
(input histograms, class counts, confidence histograms; the confidence mean is
re-weighted by the scored count; a detector's ``detection`` block and a generic model's
``values``, see ``task_counts``), so a device window is the sum of its messages and
a fleet window is the sum of its devices' windows (``pool``). Windows are aligned
on multiples of ``step`` from ``origin`` (0 by default), so the windows of all
devices and of the fleet share their bounds, and recomputing a window gives the
same one (stable keys for the store).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from cloud_sync.drift.task_counts import CountsError, TaskCounts
from cloud_sync.errors import CloudError
from edge_agent.protocol import Telemetry


class DriftError(CloudError, ValueError):
    """Counts that cannot be compared: other model, other bins, other channel count."""


@dataclass(frozen=True, eq=False)
class WindowCounts:
    """What one device (or a pooled fleet) reported for one model over ``[start, end)``.

    ``input_counts[c]`` is channel ``c``'s histogram with ``below`` first and
    ``above`` last (the layout of ``edge_agent.metrics.channel_counts``);
    ``input_inferences`` counts the inferences of the messages that carried one.
    """

    scope: str
    """A device id, or e.g. ``fleet:<name>`` for a pooled window."""
    model_name: str
    model_version: str
    start: float
    end: float
    inferences: int = 0
    messages: int = 0
    devices: frozenset[str] = frozenset()
    input_inferences: int = 0
    bin_edges: tuple[float, ...] | None = None
    input_counts: np.ndarray | None = None
    class_counts: dict[int, int] = field(default_factory=dict)
    confidence_edges: tuple[float, ...] | None = None
    confidence_counts: np.ndarray | None = None
    confidence_sum: float = 0.0
    """Sum of top-1 confidences (telemetry mean x scored count), for the exact mean."""
    tasks: TaskCounts = field(default_factory=TaskCounts)
    """A detector's ``detection`` counts, a generic model's ``values`` (protocol 1.3)."""

    @property
    def scored(self) -> int:
        """Inferences with a confidence (finite outputs)."""
        return 0 if self.confidence_counts is None else int(self.confidence_counts.sum())

    @property
    def confidence_mean(self) -> float | None:
        """Mean top-1 confidence of the window, or None when nothing was scored."""
        return self.confidence_sum / self.scored if self.scored else None


def from_telemetry(message: Telemetry, scope: str | None = None) -> WindowCounts:
    """One message as a window ``[ts - window_s, ts]`` of its device (or ``scope``)."""
    hist, conf = message.input_hist, message.confidence
    counts = None
    if hist is not None:
        counts = np.column_stack([np.asarray(hist.below, dtype=np.int64),
                                  np.asarray(hist.per_channel, dtype=np.int64).reshape(
                                      len(hist.below), -1),
                                  np.asarray(hist.above, dtype=np.int64)])
    conf_counts = None if conf is None else np.asarray(conf.counts, dtype=np.int64)
    scored = 0 if conf_counts is None else int(conf_counts.sum())
    mean = conf.mean if conf is not None and conf.mean is not None else None
    if scored and mean is None:
        raise DriftError(f"telemetry {message.device_id}#{message.seq}: confidence counts "
                         "without a mean")
    return WindowCounts(
        scope=scope or message.device_id, model_name=message.model.name,
        model_version=message.model.version, start=message.ts - message.window_s,
        end=message.ts, inferences=message.inferences, messages=1,
        devices=frozenset([message.device_id]),
        input_inferences=message.inferences if hist is not None else 0,
        bin_edges=tuple(hist.bin_edges) if hist is not None else None, input_counts=counts,
        class_counts={int(k): int(v) for k, v in message.class_counts.items() if v},
        confidence_edges=tuple(conf.edges) if conf is not None else None,
        confidence_counts=conf_counts, confidence_sum=(mean or 0.0) * scored,
        tasks=TaskCounts.of(message.detection, message.values, message.inferences))


def pool(windows: Sequence[WindowCounts], scope: str, start: float | None = None,
         end: float | None = None) -> WindowCounts:
    """The sum of windows of one model (a device's messages, or a fleet's devices).

    Raises ``DriftError`` if they are of different models or histogram layouts.
    """
    if not windows:
        raise DriftError("pool() needs at least one window")
    first = windows[0]
    total = replace(first, scope=scope, class_counts=dict(first.class_counts))
    for window in windows[1:]:
        total = _add(total, window)
    return replace(total, start=min(w.start for w in windows) if start is None else start,
                   end=max(w.end for w in windows) if end is None else end)


def _add(a: WindowCounts, b: WindowCounts) -> WindowCounts:
    if (a.model_name, a.model_version) != (b.model_name, b.model_version):
        raise DriftError(f"cannot pool model {b.model_name} {b.model_version} into "
                         f"{a.model_name} {a.model_version}: group windows by model first")
    edges, inputs = _add_hist(a.bin_edges, a.input_counts, b.bin_edges, b.input_counts, "input")
    conf_edges, conf = _add_hist(a.confidence_edges, a.confidence_counts, b.confidence_edges,
                                 b.confidence_counts, "confidence")
    classes = dict(a.class_counts)
    for k, v in b.class_counts.items():
        classes[k] = classes.get(k, 0) + v
    try:
        tasks = a.tasks + b.tasks
    except CountsError as exc:
        raise DriftError(str(exc)) from None
    return replace(a, tasks=tasks, inferences=a.inferences + b.inferences,
                   messages=a.messages + b.messages,
                   devices=a.devices | b.devices,
                   input_inferences=a.input_inferences + b.input_inferences,
                   bin_edges=edges, input_counts=inputs, class_counts=classes,
                   confidence_edges=conf_edges, confidence_counts=conf,
                   confidence_sum=a.confidence_sum + b.confidence_sum)


def _add_hist(edges_a, counts_a, edges_b, counts_b, what: str):
    if counts_b is None:
        return edges_a, counts_a
    if counts_a is None:
        return edges_b, counts_b.copy()
    if edges_a != edges_b or counts_a.shape != counts_b.shape:
        raise DriftError(f"{what} histograms on different bins or channels cannot be pooled")
    return edges_a, counts_a + counts_b


def aggregate(messages: Iterable[Telemetry], scope: str, start: float,
              end: float) -> WindowCounts | None:
    """The messages with ``start <= ts < end`` summed into one window (None if there are none).

    A repeated ``(device_id, incarnation, seq)`` (at-least-once delivery) is counted once;
    a re-imaged device's seqs start again under a new incarnation and count anew.
    """
    seen: set[tuple[str, str, int]] = set()
    parts = []
    for message in messages:
        key = (message.device_id, message.incarnation, message.seq)
        if start <= message.ts < end and key not in seen:
            seen.add(key)
            parts.append(from_telemetry(message, scope))
    return pool(parts, scope, start, end) if parts else None


def window_bounds(first_ts: float, last_ts: float, length_s: float, step_s: float,
                  origin: float = 0.0) -> list[tuple[float, float]]:
    """Every ``[origin + k step, + length)`` window that contains a time in ``[first, last]``."""
    if length_s <= 0 or step_s <= 0:
        raise DriftError("window length and step must be > 0 seconds")
    k_first = math.floor((first_ts - origin - length_s) / step_s) + 1
    k_last = math.floor((last_ts - origin) / step_s)
    return [(origin + k * step_s, origin + k * step_s + length_s)
            for k in range(k_first, k_last + 1)]


def sliding_windows(messages: Iterable[Telemetry], length_s: float,
                    step_s: float | None = None, scope: str | None = None,
                    origin: float = 0.0, until: float | None = None) -> list[WindowCounts]:
    """Windows of ``length_s`` seconds every ``step_s`` (default: ``length_s``, no overlap).

    All messages must be of one model (see ``group_by_model``); ``scope`` defaults
    to the single device's id. Windows ending after ``until`` (still open) and
    windows without messages are left out.
    """
    ordered = sorted(messages, key=lambda m: m.ts)
    if not ordered:
        return []
    step_s = length_s if step_s is None else step_s
    scope = scope or _single_device(ordered)
    times = [m.ts for m in ordered]
    windows = []
    for start, end in window_bounds(times[0], times[-1], length_s, step_s, origin):
        if until is not None and end > until:
            continue
        inside = ordered[bisect.bisect_left(times, start):bisect.bisect_left(times, end)]
        window = aggregate(inside, scope, start, end) if inside else None
        if window is not None:
            windows.append(window)
    return windows


def _single_device(messages: Sequence[Telemetry]) -> str:
    devices = {m.device_id for m in messages}
    if len(devices) != 1:
        raise DriftError(f"messages of {len(devices)} devices: name the pooled window's scope")
    return devices.pop()


def group_by_model(messages: Iterable[Telemetry],
                   per_device: bool = True) -> dict[tuple[str, str, str], list[Telemetry]]:
    """Messages split by (device id or ``""`` for the fleet, model name, model version).

    Each group is compared with its own model version's reference statistics.
    """
    groups: dict[tuple[str, str, str], list[Telemetry]] = {}
    for m in messages:
        key = (m.device_id if per_device else "", m.model.name, m.model.version)
        groups.setdefault(key, []).append(m)
    return groups
