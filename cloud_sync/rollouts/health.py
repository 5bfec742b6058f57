"""Model health of the devices that took the new version (canary) against control
devices of the same fleet still on the old version, over the same time window, from
telemetry rows. Pure figures in, verdict out; every figure is kept in the verdict.

Two comparisons are made like for like, because a fleet mixes hardware and inputs:

- **latency**: each canary device against control devices of its own profile in the
  same window; when no control device shares its profile, against its own telemetry
  on the old version just before the rollout (``latency_baseline`` says which);
- **predicted classes**: each side's Jensen-Shannon distance to its own version's
  reference class distribution (from the published bundle), and the canary's excess
  over control's is judged. A model that collapses to a few classes is far from its
  reference; a retrained model that fixes drift moves *towards* its reference, even
  though its class mix differs from the drifted control's. Without references the
  plain canary-to-control distance is used.

The model-output checks depend on the task (``task_health.TASK_HEALTH``: a classifier's
confidence and classes, a detector's detections per frame, scores, class mix and empty
frames); latency, NaN/inf outputs, errors and silence are common to every task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.rollouts.policy import Thresholds
from cloud_sync.rollouts.task_health import Check, significant, task_health
from cloud_sync.store.chunks import rows_in_chunks
from cloud_sync.store.schema import messages


@dataclass
class Figures:
    """Summed telemetry of a group of devices over the window."""

    devices: int = 0
    inferences: int = 0
    errors: int = 0
    non_finite: int = 0
    p95_ms: float | None = None
    confidence_mean: float | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    p95_by_device: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    """A detector's figures (protocol 1.3 telemetry ``detection``): frames, empty frames,
    boxes, their mean score and its variance, frames by box count, classes detected."""
    empty_frames: int = 0
    detections: int = 0
    score_mean: float | None = None
    score_var: float = 0.0
    count_edges: list[float] = field(default_factory=list)
    count_hist: list[int] = field(default_factory=list)
    detected_classes: dict[str, int] = field(default_factory=dict)

    def rate(self, count: int) -> float:
        """``count`` per inference (0 with no inferences)."""
        return count / self.inferences if self.inferences else 0.0

    @property
    def per_frame(self) -> float:
        """Detections per frame (0 with no frames)."""
        return self.detections / self.frames if self.frames else 0.0

    @property
    def empty_rate(self) -> float:
        """Share of frames with no detection (0 with no frames)."""
        return self.empty_frames / self.frames if self.frames else 0.0


class _DetectionSums:
    """A detector's telemetry rows summed: counts add up, score moments by detections."""

    def __init__(self) -> None:
        self.score_hist: np.ndarray | None = None
        self.score_edges: list[float] = []
        self.count_hist: np.ndarray | None = None
        self.score_sum = 0.0

    def add(self, out: Figures, block: dict[str, Any]) -> None:
        out.frames += int(block.get("frames") or 0)
        out.empty_frames += int(block.get("empty_frames") or 0)
        scores = np.asarray(block.get("score_hist") or [], dtype=np.int64)
        boxes = int(scores.sum())
        out.detections += boxes
        self.score_sum += float(block.get("mean_score") or 0.0) * boxes
        for i, n in enumerate(block.get("class_counts") or []):
            if n:
                out.detected_classes[str(i)] = out.detected_classes.get(str(i), 0) + int(n)
        self.score_hist = _added(self.score_hist, scores)
        self.count_hist = _added(self.count_hist, np.asarray(block.get("count_hist") or [],
                                                             dtype=np.int64))
        self.score_edges = block.get("score_edges") or self.score_edges
        out.count_edges = block.get("count_edges") or out.count_edges

    def finish(self, out: Figures) -> None:
        if self.count_hist is not None:
            out.count_hist = self.count_hist.tolist()
        if out.detections:
            out.score_mean = self.score_sum / out.detections
            edges = np.asarray(self.score_edges, float)
            centres = (edges[:-1] + edges[1:]) / 2
            hist = self.score_hist.astype(float)
            if len(centres) == len(hist):
                out.score_var = float(hist @ (centres - out.score_mean) ** 2 / hist.sum())


def _added(total: np.ndarray | None, more: np.ndarray) -> np.ndarray | None:
    if not len(more):
        return total
    if total is None or len(total) != len(more):
        return more.copy() if total is None else total
    return total + more


def _payload(row: Any) -> dict[str, Any]:
    import json

    return json.loads(row) if isinstance(row, str) else (row or {})


def figures(conn: Connection, device_ids: list[str], version: str | None, start: float,
            end: float, exclude: str | None = None) -> Figures:
    """Telemetry of ``device_ids`` on ``version`` (any but ``exclude`` when None) with
    ``start <= ts < end``."""
    out = Figures()
    if not device_ids:
        return out
    m = messages.c

    def query(ids: list[str]) -> sa.Select:
        q = sa.select(m.device_id, m.ts, m.inferences, m.errors, m.latency_p95,
                      m.confidence_mean, m.payload).where(
            m.kind == "telemetry", m.device_id.in_(ids), m.ts >= start, m.ts < end)
        if version is not None:
            return q.where(m.model_version == version)
        return q if exclude is None else q.where(m.model_version != exclude)

    p95s, confs = [], []
    per_device: dict[str, list[tuple[float, int]]] = {}
    boxes = _DetectionSums()
    for row in rows_in_chunks(conn, device_ids, query):
        doc, n = _payload(row.payload), row.inferences or 0
        out.last_seen[row.device_id] = max(out.last_seen.get(row.device_id, 0.0), row.ts)
        out.inferences += n
        out.errors += row.errors or 0
        out.non_finite += int((doc.get("model") or {}).get("non_finite") or 0)
        if n and row.latency_p95 is not None:
            p95s.append((row.latency_p95, n))
            per_device.setdefault(row.device_id, []).append((row.latency_p95, n))
        if n and row.confidence_mean is not None:
            confs.append((row.confidence_mean, n))
        for cls, count in (doc.get("class_counts") or {}).items():
            out.class_counts[cls] = out.class_counts.get(cls, 0) + int(count)
        if doc.get("detection"):
            boxes.add(out, doc["detection"])
    boxes.finish(out)
    out.devices = len(out.last_seen)
    out.p95_ms = _weighted(p95s)
    out.confidence_mean = _weighted(confs)
    out.p95_by_device = {d: v for d, pairs in per_device.items()
                         if (v := _weighted(pairs)) is not None}
    return out


@dataclass
class Context:
    """What a like-for-like comparison needs beyond the two groups' figures: each
    device's profile, the canary devices' own p95 before the rollout, and the reference
    class distributions of the new version and of control's versions."""

    profiles: dict[str, str | None] = field(default_factory=dict)
    own_before_p95: dict[str, float] = field(default_factory=dict)
    canary_reference: list[float] | None = None
    control_reference: list[float] | None = None
    task: str = "classification"
    """The new version's task (the manifest's ``task.kind``): which checks apply."""


def latency_ratio(canary: Figures, control: Figures, ctx: Context
                  ) -> tuple[float | None, float | None, str]:
    """(p95 ratio, p95 difference in ms, what it was compared with): the median over canary
    devices of their p95 against same-profile control devices', else their own before."""
    ratios, diffs, bases = [], [], set()
    for device, p95 in canary.p95_by_device.items():
        profile = ctx.profiles.get(device)
        peers = [v for d, v in control.p95_by_device.items()
                 if profile is not None and ctx.profiles.get(d) == profile]
        if peers:
            base, how = float(np.median(peers)), "same-profile control"
        elif device in ctx.own_before_p95:
            base, how = ctx.own_before_p95[device], "own p95 before the rollout"
        else:
            continue
        if base > 0:
            ratios.append(p95 / base)
            diffs.append(p95 - base)
            bases.add(how)
    if not ratios:
        return None, None, "no like-for-like baseline"
    return float(np.median(ratios)), float(np.median(diffs)), " + ".join(sorted(bases))


def _weighted(pairs: list[tuple[float, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


@dataclass
class Verdict:
    """``ok``, ``bad`` or ``insufficient`` (not enough data yet), why, and the figures."""

    outcome: str
    reasons: list[str]
    figures: dict[str, Any]
    hard: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def _comparisons(canary: Figures, control: Figures, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task": ctx.task,
        "non_finite_rate": canary.rate(canary.non_finite),
        "error_rate": canary.rate(canary.errors),
        "control_error_rate": control.rate(control.errors) if control.inferences else None,
        "p95_ratio": None, "p95_diff_ms": None, "latency_baseline": None}
    out["p95_ratio"], out["p95_diff_ms"], out["latency_baseline"] = latency_ratio(
        canary, control, ctx)
    return {**out, **task_health(ctx.task).compare(canary, control, ctx)}


COMMON_CHECKS = (Check("non_finite_rate", "max_non_finite_rate", "NaN/inf output rate"),
                 Check("p95_ratio", "max_p95_ratio", "p95 latency ratio to control"))
HARD = ("non_finite_rate",)  # halts at once; the others are judged over the whole bake


def checks_of(task: str) -> tuple[Check, ...]:
    """The checks a rollout of a ``task`` model is judged by."""
    return COMMON_CHECKS + task_health(task).checks


def all_checks() -> tuple[Check, ...]:
    """Every task's checks (for showing a stored verdict whatever its task)."""
    from cloud_sync.rollouts.task_health import TASK_HEALTH

    found = dict.fromkeys(COMMON_CHECKS)
    for health in TASK_HEALTH.values():
        found.update(dict.fromkeys(health.checks))
    return tuple(found)


def judge(canary: Figures, control: Figures, expected: list[str], t: Thresholds,
          now: float, heartbeat_s: float, since: float, ctx: Context | None = None) -> Verdict:
    """Compare canary with control; ``expected`` are the devices that should report (silence
    counts from their last telemetry on the new version, or from ``since``). ``hard`` on
    the verdict: a reason that halts at once (NaN/inf outputs, errors, silence), not only
    at the end of the bake."""
    ctx = ctx or Context()
    comp = _comparisons(canary, control, ctx)
    quiet = {d: now - max(canary.last_seen.get(d, since), since) for d in expected}
    silent = {d: round(s / heartbeat_s, 1) for d, s in quiet.items()
              if s > t.max_missed_heartbeats * heartbeat_s}
    figs = {"canary": asdict(canary), "control": asdict(control), **comp,
            "missed_heartbeats": silent}
    noise = comp["p95_diff_ms"] is not None and comp["p95_diff_ms"] < t.p95_floor_ms
    failing = [(c.figure, f"{c.label} {comp[c.figure]:.3g} {c.sign} {getattr(t, c.limit):.3g}")
               for c in checks_of(ctx.task)
               if c.fails(comp.get(c.figure), getattr(t, c.limit))
               and not (c.figure == "p95_ratio" and noise) and significant(c, comp, t)]
    reasons = [why for _, why in failing]
    hard = any(key in HARD for key, _ in failing)
    if comp["control_error_rate"] is not None and \
            comp["error_rate"] - comp["control_error_rate"] > t.max_error_rate_increase:
        reasons.append(f"error rate {comp['error_rate']:.3g} vs control "
                       f"{comp['control_error_rate']:.3g}")
        hard = True
    if canary.devices < t.min_devices or canary.inferences < t.min_inferences:
        return Verdict("insufficient", [f"{canary.devices} device(s), {canary.inferences} "
                                        f"inference(s) so far (need {t.min_devices}, "
                                        f"{t.min_inferences})"], figs)
    if silent:
        reasons.append(f"missed heartbeats from {', '.join(sorted(silent))}")
        hard = True
    return Verdict("bad" if reasons else "ok", reasons, figs, hard)
