"""``report.html``: one self-contained page (inline SVG charts, no scripts) of what the demo
did: the stages and their figures, the timeline, per device the task's figure of merit
(accuracy, mAP@0.5), confidence and drift over time with the shift, the trigger and the
rollout marked, the task's own sections (a detector's example frame), latency and size
per profile for v1 and v2, and the builds' candidate tables."""

from __future__ import annotations

import html
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_sync.dashboard.format import number
from edge_agent.bundle.archive import atomic_write
from edgekit.demo.timeline import plain

if TYPE_CHECKING:
    from edgekit.demo.run import Demo

MARKS = {"shift": ("shift", "#d73027"), "trigger": ("trigger", "#fc8d59"),
         "rollout": ("rollout", "#4575b4"), "done": ("all on v2", "#1a9850")}
KIND_COLOURS = {"input": "#984ea3", "output": "#ff7f00", "confidence": "#377eb8",
                # a detector's drift kinds (cloud_sync.drift.tasks)
                "det_count": "#ff7f00", "det_score": "#377eb8", "det_class": "#a65628",
                "det_area": "#f781bf", "values": "#ff7f00"}
OTHER_COLOURS = ("#4daf4a", "#999999", "#e41a1c", "#66c2a5")


# -- figures -----------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A value for people: numbers as the dashboard shows them (4 significant digits),
    lists joined, mappings as 'key value' pairs."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return number(value, digits=4)


def collect(demo: Demo) -> dict[str, Any]:
    """What the page shows, read from the demo's observations, the cloud's API and the
    build reports."""
    start, bucket_s = demo.tl.start, demo.task.bucket_s
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with demo.obs_lock:
        observations = list(demo.observations)
    buckets: dict[tuple[str, int], list] = defaultdict(list)
    for o in observations:
        buckets[(o.device, int((o.t - start) // bucket_s))].append(o)
    for (device, b), obs in sorted(buckets.items()):
        t = (b + 0.5) * bucket_s
        dev = series.setdefault(device, {})
        for name, value in demo.task.figures(obs).items():
            if value is not None:
                dev.setdefault(name, []).append((t, value))
    drift: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for device in demo.streams:
        try:
            items = demo.fleet.get(f"drift?device={device}&limit=2000")["items"]
        except OSError:
            items = []
        for item in sorted(items, key=lambda i: i["window_end"]):
            if item.get("score") is None or not item.get("threshold"):
                continue
            drift.setdefault(device, {}).setdefault(item["kind"], []).append(
                (item["window_end"] - start, item["score"] / item["threshold"]))
    reports = {"v1": demo.facts.get("build_report")}
    retrained = demo.facts.get("retrain_report")
    if retrained and Path(retrained).is_file():
        reports["v2"] = json.loads(Path(retrained).read_text())
    return {"series": series, "drift": drift, "reports": reports,
            "rollout": demo.facts.get("rollout")}


# -- SVG ---------------------------------------------------------------------------------
def svg_chart(lines: list[tuple[str, str, list[tuple[float, float]]]], marks: list[tuple],
              x_max: float, y_max: float, title: str, threshold: float | None = None,
              width: int = 560, height: int = 210) -> str:
    """A line chart: ``lines`` of (label, colour, points), vertical ``marks`` of
    (x, label, colour), an optional dashed threshold line."""
    left, right, top, bottom = 44, 12, 42, 30
    w, h = width - left - right, height - top - bottom
    x_max = max(x_max, 1.0)

    def px(x: float) -> float:
        return left + w * min(max(x, 0.0), x_max) / x_max

    def py(y: float) -> float:
        return top + h * (1 - min(max(y, 0.0), y_max) / y_max)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{left}" y="16" class="title">{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="frame"/>']
    for i in range(5):
        y = y_max * i / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   f'class="grid"/><text x="{left - 4}" y="{py(y) + 4:.1f}" '
                   f'class="tick" text-anchor="end">{y:.2g}</text>')
    for i in range(6):
        x = x_max * i / 5
        out.append(f'<text x="{px(x):.1f}" y="{top + h + 14}" class="tick" '
                   f'text-anchor="middle">{x:.0f} s</text>')
    if threshold is not None:
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{py(threshold):.1f}" '
                   f'y2="{py(threshold):.1f}" class="threshold"/>'
                   f'<text x="{left + w - 4}" y="{py(threshold) - 4:.1f}" class="tick" '
                   f'text-anchor="end">threshold</text>')
    for i, (x, label, colour) in enumerate(marks):
        label_y = top + 10 + 11 * (i % 4)  # staggered, so close marks stay readable
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + h}" '
                   f'stroke="{colour}" class="mark"/><text x="{px(x) + 3:.1f}" y="{label_y}" '
                   f'class="marklabel" fill="{colour}">{html.escape(label)}</text>')
    for n, (label, colour, points) in enumerate(lines):
        if points:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"/>')
        lx = left + n * min(110, w // max(len(lines), 1))  # the legend fits the width
        out.append(f'<rect x="{lx}" y="23" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14}" y="32" class="legend">{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


# -- tables ------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, _Html):
        return str(value)
    return html.escape(fmt(value))


class _Html(str):
    """Markup that a table cell keeps as is."""


def badge(status: str) -> _Html:
    return _Html(f'<span class="badge {html.escape(status)}">{html.escape(status)}</span>')


def stage_rows(stages: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for name, st in stages.items():
        figures = {k: v for k, v in st.items() if k not in ("status", "seconds")}
        lines = "".join(_figure_lines(k, v) for k, v in figures.items())
        rows.append([name, badge(st["status"]), st.get("seconds"), _Html(lines)])
    return rows


def _figure_lines(name: str, value: Any) -> str:
    """One figure of a stage: ``name value``; a mapping of mappings (e.g. one entry per
    profile) as a heading and one indented line per entry."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        entries = "".join(f'<div class="sub"><b>{html.escape(str(k))}</b> '
                          f"{html.escape(fmt(v))}</div>" for k, v in value.items())
        return f"<div><b>{html.escape(str(name))}</b></div>{entries}"
    return f"<div><b>{html.escape(str(name))}</b> {html.escape(fmt(value))}</div>"


def profile_rows(reports: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for version, report in reports.items():
        for name, p in ((report or {}).get("profiles") or {}).items():
            size = p.get("size_bytes")
            rows.append([version, name, f"{p.get('format')}/{p.get('precision')}",
                         p.get("method"), p.get("prune_ratio"), p.get("metric"),
                         p.get("latency_ms"), p.get("baseline_latency_ms"),
                         f"{p['speedup']:.2f}x" if p.get("speedup") else None,
                         f"{size / 1e3:.0f} kB" if size else None,
                         p.get("latency_host")])
    return rows


def candidate_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, p in ((report or {}).get("profiles") or {}).items():
        for c in p.get("candidates", []):
            size = c.get("size_bytes")
            rows.append([name, c.get("id"), badge(c.get("status") or "-"), c.get("metric"),
                         c.get("latency_ms"), f"{size / 1e3:.0f} kB" if size else None,
                         c.get("reason") or ""])
    return rows


# -- the page ----------------------------------------------------------------------------
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;width:100%}td,th{border:1px solid #ddd;
padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f4f4f4}
.stages td:nth-child(-n+3),.stages th,.timeline td:nth-child(-n+2),.cands td:not(:last-child),
.cands th{white-space:nowrap;overflow-wrap:normal}
.sub{padding-left:1.5em}
.badge{padding:1px 8px;border-radius:9px;color:#fff;background:#777;white-space:nowrap}
.badge.ok,.badge.chosen,.badge.done{background:#1a9850}.badge.failed,.badge.rejected{
background:#d73027}.badge.passed{background:#66bd63}.badge.reference{background:#4575b4}
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart{border:1px solid #eee;background:#fff}
.chart .title{font-weight:600;font-size:13px}.chart .tick{font-size:10px;fill:#555}
.chart .legend{font-size:11px}.chart .frame{fill:none;stroke:#ccc}.chart .grid{stroke:#eee}
.chart .threshold{stroke:#d73027;stroke-dasharray:5 4}.chart .mark{stroke-width:1.5;
stroke-dasharray:3 3}.chart .marklabel{font-size:10px}.verdict{font-size:16px;padding:8px;
border-radius:6px}.verdict.ok{background:#e5f5e0}.verdict.failed{background:#fde0dd}
.frames{display:flex;flex-wrap:wrap;gap:16px}.frame{margin:0}.frame figcaption{
font-size:13px;margin-top:4px}.boxlabel{font:600 12px system-ui,sans-serif;paint-order:stroke;
stroke:#000;stroke-width:3px}
"""


def write_report(demo: Demo, data: dict[str, Any], path: Path) -> Path:
    """Render and write report.html (atomically)."""
    tl = demo.tl
    x_max = time.time() - tl.start
    marks = [(e.t, *MARKS[e.mark]) for e in tl.events if e.mark in MARKS]
    done = {k: st for k, st in tl.stages.items() if st["status"] != "running"}
    ok = all(st["status"] == "ok" for st in done.values())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit demo report"
             f"</title><style>{STYLE}</style></head><body><h1>edgekit demo: the whole loop</h1>",
             f'<p class="verdict {"ok" if ok else "failed"}">'
             f'{"Every stage ok" if ok else "A stage failed"} - {html.escape(demo.task.name)}, '
             f'{len(demo.s.devices)} devices, shift <b>{html.escape(demo.s.shift)}</b> on '
             f'{html.escape(", ".join(demo.s.shifted))}, {x_max:.0f} s in all.</p>',
             "<h2>Stages</h2>", table(["stage", "status", "seconds", "figures"],
                                      stage_rows(done), "stages"),
             "<h2>Per device over time</h2><div class='charts'>"]
    for d in demo.s.devices:
        dev = data["series"].get(d.device_id, {})
        label = f"{d.device_id} ({d.profile}{', shifted' if d.shifted else ''})"
        lines = demo.task.lines
        parts.append(svg_chart([(ln.label, ln.colour, dev.get(ln.figure, [])) for ln in lines],
                               marks, x_max, 1.0,
                               f"{label}: {' and '.join(ln.label for ln in lines)}"))
        drift = data["drift"].get(d.device_id, {})
        peak = max([y for pts in drift.values() for _, y in pts] + [2.0])
        parts.append(svg_chart([(kind, KIND_COLOURS.get(kind, OTHER_COLOURS[i % 4]), pts)
                                for i, (kind, pts) in enumerate(drift.items())],
                               marks, x_max, min(peak * 1.1, 50.0),
                               f"{d.device_id}: drift score / threshold", threshold=1.0))
    parts.append("</div>")
    parts += demo.task.report_sections(demo)
    parts += ["<h2>Timeline</h2>", table(["t (s)", "stage", "what happened"],
                                         [[e.t, e.stage, plain(e.text)] for e in tl.events],
                                         "timeline")]
    rollout = data.get("rollout")
    if rollout:
        parts += ["<h2>Rollout</h2>", rollout_section(rollout)]
    parts += ["<h2>Latency and size per profile</h2>",
              table(["model", "profile", "chosen", "method", "prune",
                     demo.task.build_metric_label, "ms", "fp32 ms", "vs fp32", "size",
                     "timed on"], profile_rows(data["reports"]))]
    for version, report in data["reports"].items():
        if report:
            parts += [f"<h2>Build candidates ({version})</h2>",
                      table(["profile", "candidate", "status", demo.task.build_metric_label,
                             "ms", "size", "reason"], candidate_rows(report), "cands")]
    parts.append("</body></html>")
    atomic_write(path, "".join(parts).encode("utf-8"))
    return path


def rollout_section(doc: dict[str, Any]) -> str:
    """The rollout's state and waves, its last verdict (canary vs control, each check) and
    its timeline."""
    start = doc.get("created_at") or 0.0
    out = table(["rollout", "model", "state", "waves (devices, cumulative)", "devices by state"],
                [[doc.get("id"), f"{doc.get('model')} v{doc.get('version')}",
                  badge(str(doc.get("state"))), doc.get("waves"), doc.get("device_counts")]])
    verdict = doc.get("verdict") or {}
    figures = verdict.get("figures") or {}
    judged = [e for e in doc.get("timeline") or []
              if ((e.get("figures") or {}).get("control") or {}).get("devices")]
    if judged:  # the canary's verdict, the one with control devices beside it
        figures = judged[0]["figures"]
        verdict = {"outcome": "bad" if judged[0].get("state") == "halted" else "ok",
                   "reasons": [] if judged[0].get("state") != "halted"
                   else [judged[0].get("message")]}
    if figures.get("canary"):
        rows = []
        for key, label in (("devices", "devices"), ("inferences", "inferences"),
                           ("errors", "errors"), ("non_finite", "NaN/inf outputs"),
                           ("p95_ms", "p95 ms"), ("confidence_mean", "mean confidence")):
            rows.append([label, figures["canary"].get(key), figures["control"].get(key)])
        out += f"<p>Canary verdict: {badge(str(verdict.get('outcome')))} " \
               f"{html.escape(fmt(verdict.get('reasons')) or 'every check within limits')}</p>"
        out += table(["figure", "canary (new version)", "control (old version)"], rows)
        out += table(["check", "value", "how it was compared"], [
            ["p95 latency ratio", figures.get("p95_ratio"), figures.get("latency_baseline")],
            ["mean confidence drop", figures.get("confidence_drop"), "canary vs control"],
            ["predicted-class distance beyond control's", figures.get("class_distance"),
             figures.get("class_distance_basis")],
            ["NaN/inf rate", figures.get("non_finite_rate"), "canary"],
            ["error rate", figures.get("error_rate"), "canary"]])
    events = doc.get("timeline") or []
    if events:
        out += table(["t (s after start)", "state", "what happened"],
                     [[round((e.get("at") or start) - start, 1), badge(str(e.get("state"))),
                       e.get("message")] for e in events], "timeline")
    return out
