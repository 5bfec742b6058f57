"""What the controller decided: triggers with their evidence, rollouts with their verdicts
and timelines."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from cloud_sync.api.deps import get_conn
from cloud_sync.dashboard import queries as q
from cloud_sync.dashboard.auth import PREFIX, require_login
from cloud_sync.dashboard.render import DashboardError, positive_int, render
from cloud_sync.rollouts.health import all_checks
from cloud_sync.triggers.queries import get_trigger

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(require_login)])
PER_PAGE = 50
GROUP_FIGURES = ("devices", "inferences", "errors", "non_finite", "p95_ms", "confidence_mean",
                 "frames", "empty_frames", "detections", "score_mean")
DETECTOR_ONLY = ("frames", "empty_frames", "detections", "score_mean")
CLASSIFIER_ONLY = ("confidence_mean",)
HIDDEN_FIGURES = ("canary", "control", "p_values", "frames_per_side")
HIDDEN_EVIDENCE = ("fleet", "model", "version", "trigger_id")  # shown in the page header


def _page(request: Request) -> int:
    return positive_int("page", request.query_params.get("page"), 1)


@router.get("/triggers")
def triggers_page(request: Request, conn: Connection = Depends(get_conn)) -> Response:
    """Fired triggers, newest first."""
    page = _page(request)
    rows, total = q.trigger_rows(conn, PER_PAGE, (page - 1) * PER_PAGE)
    return render(request, "triggers.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PER_PAGE)))


def _page_id(kind: str, text: str) -> int:
    """A page's numeric id from its URL; anything else names a page that does not exist."""
    if not text.isdigit():
        raise DashboardError(404, f"no {kind} {text!r}; pick one from the {kind}s list")
    return int(text)


@router.get("/triggers/{trigger_id}")
def trigger_page(trigger_id: str, request: Request,
                 conn: Connection = Depends(get_conn)) -> Response:
    """One trigger: its evidence as tables, its actions and their attempts."""
    found = get_trigger(conn, _page_id("trigger", trigger_id))
    if found is None:
        raise DashboardError(404, f"no trigger {trigger_id}; pick one from the triggers list")
    evidence = {k: v for k, v in found["evidence"].items() if k not in HIDDEN_EVIDENCE}
    return render(request, "trigger.html", t=found, evidence=evidence)


@router.get("/rollouts")
def rollouts_page(request: Request, conn: Connection = Depends(get_conn)) -> Response:
    """Rollouts, newest first, with device counts per state."""
    page = _page(request)
    rows, total = q.rollout_rows(conn, PER_PAGE, (page - 1) * PER_PAGE)
    return render(request, "rollouts.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PER_PAGE)))


def comparison(figures: dict[str, Any] | None, thresholds: dict[str, Any]) -> dict[str, Any]:
    """Canary vs control rows and the derived checks (figure, value, limit, over?) of a
    health verdict's figures; empty when the verdict has none."""
    figures = figures or {}
    canary, control = figures.get("canary") or {}, figures.get("control") or {}
    detector = figures.get("task") == "detection"
    groups = [(name, canary.get(name), control.get(name)) for name in GROUP_FIGURES
              if (name in canary or name in control)
              and name not in (CLASSIFIER_ONLY if detector else DETECTOR_ONLY)]
    if detector:
        groups += [("detections per frame", _ratio(canary, "detections", "frames"),
                    _ratio(control, "detections", "frames")),
                   ("empty-frame rate", _ratio(canary, "empty_frames", "frames"),
                    _ratio(control, "empty_frames", "frames"))]
    shown = [c for c in all_checks() if c.figure in figures]
    p_values = figures.get("p_values") or {}
    twice = {c.figure for c in shown if sum(o.figure == c.figure for o in shown) > 1}
    checks = [(c.label + ((" (lower limit)" if c.below else " (upper limit)")
                          if c.figure in twice else ""), figures.get(c.figure),
               thresholds.get(c.limit), c.fails(figures.get(c.figure), thresholds.get(c.limit)),
               p_values.get(c.figure), c.below) for c in shown]
    rest = {k: v for k, v in figures.items()
            if k not in HIDDEN_FIGURES and k not in {c.figure for c in shown}}
    key = "detected_classes" if detector else "class_counts"
    classes = (canary.get(key) or {}, control.get(key) or {})
    return {"groups": groups, "checks": checks, "rest": rest, "detector": detector,
            "with_p": any(check[4] is not None for check in checks), "classes": classes,
            "mix": class_mix(*classes)}


def class_mix(canary: dict[str, int], control: dict[str, int]) -> list[tuple[str, float, float]]:
    """(class, canary share, control share) per class, by class index: the bars of the
    class-mix chart."""
    totals = (sum(canary.values()) or 1, sum(control.values()) or 1)
    keys = sorted(set(canary) | set(control), key=lambda k: (len(k), k))
    return [(k, canary.get(k, 0) / totals[0], control.get(k, 0) / totals[1]) for k in keys]


def _ratio(group: dict[str, Any], part: str, whole: str) -> float | None:
    return group[part] / group[whole] if group.get(whole) else None


@router.get("/rollouts/{rollout_id}")
def rollout_page(rollout_id: str, request: Request,
                 conn: Connection = Depends(get_conn)) -> Response:
    """One rollout: state, waves, canary vs control, the timeline, its devices."""
    found = q.rollout_detail(conn, _page_id("rollout", rollout_id))
    if found is None:
        raise DashboardError(404, f"no rollout {rollout_id}; pick one from the rollouts list")
    thresholds = (found["policy"] or {}).get("thresholds") or {}
    verdict = found["verdict"] or {}
    return render(request, "rollout.html", r=found, verdict=verdict,
                  compare=comparison(verdict.get("figures"), thresholds),
                  events=[{**e, "compare": comparison(e["figures"], thresholds)}
                          for e in found["timeline"]])
