"""The trigger rule and the evidence a trigger carries (pure: scores in, decision out).

A device *holds* drift when at least ``k`` of the last ``n`` windows have a ``drift``
verdict in any kind (a window without data counts as no drift); the pooled fleet
holds it the same way. A group fires when ``min_devices`` devices hold drift, or,
with ``fleet_wide``, when the fleet does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud_sync.drift import DRIFT, FAMILIES, DriftResult, any_drift
from cloud_sync.triggers.policy import TriggerPolicy
from cloud_sync.triggers.scoring import GroupScores

MAX_EVIDENCE_DEVICES = 100
TOP_CHANNELS = 5
SCORE_FIELDS = ("kind", "verdict", "score", "threshold", "critical_value", "floor", "n_eff",
                "m_eff", "n_raw", "m_raw", "inferences")


@dataclass(frozen=True)
class Decision:
    """Whether a group fires, and why."""

    fire: bool
    devices: tuple[str, ...]
    fleet_holds: bool
    reason: str


def _drifting(windows: list[dict[str, DriftResult] | None],
              kinds: tuple[str, ...] | None = None) -> int:
    """Windows with a drift verdict in one of ``kinds`` (every kind when None); a task's
    kind counts as its family (``drift.FAMILIES``: a detector's ``det_class`` is output)."""
    def counted(w: dict[str, DriftResult]) -> dict[str, DriftResult]:
        return w if kinds is None else {k: r for k, r in w.items()
                                        if FAMILIES.get(k, k) in kinds}
    return sum(1 for w in windows if w is not None and any_drift(counted(w)))


def decide(group: GroupScores, policy: TriggerPolicy) -> Decision:
    """Apply the k-of-n rule to a group's scores."""
    if group.skipped:
        return Decision(False, (), False, group.skipped)
    kinds = policy.kinds
    devices = tuple(d for d, ws in group.devices.items() if _drifting(ws, kinds) >= policy.k)
    fleet_holds = policy.fleet_wide and _drifting(group.fleet, kinds) >= policy.k
    rule = (f"{'/'.join(kinds)} drift on >= {policy.k} of the last {policy.n} windows of "
            f"{policy.window_s:g} s")
    if len(devices) >= policy.min_devices:
        return Decision(True, devices, fleet_holds,
                        f"{len(devices)} device(s) (>= {policy.min_devices}) with {rule}")
    if fleet_holds:
        return Decision(True, devices, True, f"the pooled fleet with {rule}")
    return Decision(False, devices, False, f"fewer than {policy.min_devices} device(s) and "
                    "not the fleet with " + rule)


def _scores(windows: list[dict[str, DriftResult] | None], bounds) -> list[dict[str, Any]]:
    out = []
    for (start, end), results in zip(bounds, windows, strict=True):
        for r in (results or {}).values():
            doc = r.to_dict()
            out.append({"window": [start, end], **{k: doc[k] for k in SCORE_FIELDS}})
    return out


def top_channels(group: GroupScores, devices: tuple[str, ...]) -> list[dict[str, Any]]:
    """Input channels furthest over their thresholds, over the affected devices' windows
    and the fleet's (the worst window of each channel), with how many devices drift on it."""
    best: dict[int, dict[str, Any]] = {}
    scopes = [(d, group.devices[d]) for d in devices] + [("fleet", group.fleet)]
    for scope, windows in scopes:
        for results in filter(None, windows):
            result = results.get("input")
            for ch in result.channels if result is not None else ():
                ratio = ch.psi / ch.threshold if ch.threshold else 0.0
                entry = best.setdefault(ch.channel, {"channel": ch.channel, "ratio": -1.0,
                                                     "devices": set()})
                if ch.drifting and scope != "fleet":
                    entry["devices"].add(scope)
                if ratio > entry["ratio"]:
                    entry.update(ratio=ratio, psi=ch.psi, threshold=ch.threshold,
                                 drifting=ch.drifting)
    ranked = sorted(best.values(), key=lambda e: -e["ratio"])[:TOP_CHANNELS]
    return [{**e, "ratio": round(e["ratio"], 4), "devices": len(e["devices"])} for e in ranked]


def evidence(group: GroupScores, decision: Decision, policy: TriggerPolicy) -> dict[str, Any]:
    """What a trigger shows: windows, scores vs thresholds with both sample sizes, the top
    drifting channels and the devices affected."""
    affected = decision.devices[:MAX_EVIDENCE_DEVICES]
    devices = [{"device_id": d, "windows_drifting": _drifting(group.devices[d], policy.kinds),
                "kinds": sorted({r.kind for w in group.devices[d] if w for r in w.values()
                                 if r.verdict == DRIFT}),
                "scores": _scores(group.devices[d], group.bounds)} for d in affected]
    fleet, model, version = group.key
    return {"fleet": fleet, "model": model, "version": version, "reason": decision.reason,
            "rule": {"k": policy.k, "n": policy.n, "window_s": policy.window_s,
                     "min_devices": policy.min_devices, "fleet_wide": policy.fleet_wide,
                     "kinds": list(policy.kinds)},
            "windows": [list(b) for b in group.bounds],
            "devices_checked": len(group.devices) if group.checked is None else group.checked,
            "devices_affected": list(decision.devices),
            "devices": devices, "devices_truncated": len(decision.devices) > len(affected),
            "fleet_scores": {"holds": decision.fleet_holds,
                             "windows_drifting": _drifting(group.fleet, policy.kinds),
                             "scores": _scores(group.fleet, group.bounds)},
            "top_channels": top_channels(group, decision.devices)}
