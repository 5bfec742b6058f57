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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.rollouts.policy import Thresholds
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

    def rate(self, count: int) -> float:
        """``count`` per inference (0 with no inferences)."""
        return count / self.inferences if self.inferences else 0.0


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


def reference_distance(counts: dict[str, int], reference: list[float] | None) -> float | None:
    """JS distance of class counts to a reference class distribution (by class index)."""
    if not reference:
        return None
    return class_distance(counts, {str(i): p for i, p in enumerate(reference)})


def _weighted(pairs: list[tuple[float, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def class_distance(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two class-count histograms."""
    keys = sorted(set(a) | set(b))
    p = np.array([a.get(k, 0) for k in keys], float)
    q = np.array([b.get(k, 0) for k in keys], float)
    if not keys or p.sum() == 0 or q.sum() == 0:
        return None
    from cloud_sync.drift.stats import js_distance

    return float(js_distance(p, q))


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
        "non_finite_rate": canary.rate(canary.non_finite),
        "error_rate": canary.rate(canary.errors),
        "control_error_rate": control.rate(control.errors) if control.inferences else None,
        "p95_ratio": None, "p95_diff_ms": None, "latency_baseline": None,
        "confidence_drop": None, "class_distance": None, "class_distance_basis": None}
    out["p95_ratio"], out["p95_diff_ms"], out["latency_baseline"] = latency_ratio(
        canary, control, ctx)
    if control.inferences:
        if canary.confidence_mean is not None and control.confidence_mean is not None:
            out["confidence_drop"] = control.confidence_mean - canary.confidence_mean
        to_ref = reference_distance(canary.class_counts, ctx.canary_reference)
        control_to_ref = reference_distance(control.class_counts, ctx.control_reference)
        if to_ref is not None and control_to_ref is not None:
            out["class_distance"] = to_ref - control_to_ref
            out["class_distance_basis"] = (f"distance to own reference {to_ref:.3g} vs "
                                           f"control's {control_to_ref:.3g}")
        else:
            out["class_distance"] = class_distance(canary.class_counts, control.class_counts)
            out["class_distance_basis"] = "distance to control (no reference)"
    return out


CHECKS = (  # (figure, threshold attribute, how it reads)
    ("non_finite_rate", "max_non_finite_rate", "NaN/inf output rate"),
    ("p95_ratio", "max_p95_ratio", "p95 latency ratio to control"),
    ("confidence_drop", "max_confidence_drop", "mean confidence drop vs control"),
    ("class_distance", "max_class_distance", "predicted-class distance beyond control's"),
)
HARD = ("non_finite_rate",)  # halts at once; the others are judged over the whole bake


def judge(canary: Figures, control: Figures, expected: list[str], t: Thresholds,
          now: float, heartbeat_s: float, since: float, ctx: Context | None = None) -> Verdict:
    """Compare canary with control; ``expected`` are the devices that should report (silence
    counts from their last telemetry on the new version, or from ``since``). ``hard`` on
    the verdict: a reason that halts at once (NaN/inf outputs, errors, silence), not only
    at the end of the bake."""
    comp = _comparisons(canary, control, ctx or Context())
    quiet = {d: now - max(canary.last_seen.get(d, since), since) for d in expected}
    silent = {d: round(s / heartbeat_s, 1) for d, s in quiet.items()
              if s > t.max_missed_heartbeats * heartbeat_s}
    figs = {"canary": asdict(canary), "control": asdict(control), **comp,
            "missed_heartbeats": silent}
    noise = comp["p95_diff_ms"] is not None and comp["p95_diff_ms"] < t.p95_floor_ms
    failing = [(key, f"{label} {comp[key]:.3g} > {getattr(t, attr):g}")
               for key, attr, label in CHECKS
               if comp[key] is not None and comp[key] > getattr(t, attr)
               and not (key == "p95_ratio" and noise)]
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
