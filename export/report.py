"""The build report: ``report.json`` (every figure) and ``report.html`` (the same, readable,
with matplotlib plots embedded as base64 PNG): the data splits and what each was used for,
the prune search (ratios in order, verdicts, where the time budget went), and per profile
the chosen candidate, where its latencies were measured and how it was chosen."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from edge_agent.bundle.archive import atomic_write

STATUS_COLOURS = {"chosen": "#1a9850", "passed": "#91cf60", "rejected": "#d73027",
                  "failed": "#7f7f7f", "reference": "#4575b4", "skipped": "#bdbdbd"}
CANDIDATE_COLUMNS = ("id", "status", "metric", "gate_metric", "latency_ms", "latency_ms_1thread",
                     "threads", "size_bytes", "reason")
TRIAL_COLUMNS = ("ratio", "step", "parent", "metric", "verdict", "seconds")


def write_json(doc: dict[str, Any], path: Path) -> Path:
    """Write the report as indented JSON (atomically: a crash never leaves half a file)."""
    text = json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, text.encode("utf-8"))
    return path


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def tradeoff_plot(profile: dict[str, Any]) -> str:
    """Latency vs metric of every measured candidate, coloured by verdict (base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [c for c in profile["candidates"] + profile.get("references", [])
            if c.get("latency_ms") is not None and c.get("metric") is not None]
    for status, colour in STATUS_COLOURS.items():
        pts = [c for c in rows if c["status"] == status]
        left.scatter([c["latency_ms"] for c in pts], [c["metric"] for c in pts], c=colour,
                     label=status, s=60 if status == "chosen" else 30, edgecolors="black")
    floor = profile["baseline_metric"] - profile["allowed_drop"]
    left.axhline(floor, color="#d73027", linestyle="--", linewidth=1, label="tolerance floor")
    where = profile.get("latency_host") or "this host"
    left.set(xlabel=f"latency (ms, {where})", ylabel="metric (selection split)",
             title="latency vs metric")
    left.legend(fontsize=7)
    names = [c["id"] for c in rows]
    right.barh(names, [c["size_bytes"] / 1e3 for c in rows],
               color=[STATUS_COLOURS.get(c["status"], "#999") for c in rows])
    right.set(xlabel="size (kB)", title="file size")
    right.tick_params(axis="y", labelsize=6)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr class='{}'>".format(html.escape(str(r.get("status", "")))) +
                   "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SUMMARY_KEYS = ("status", "bundle", "format", "precision", "method", "prune_ratio", "metric",
                "baseline_metric", "metric_split", "selection_metric",
                "selection_baseline_metric", "latency_ms", "baseline_latency_ms", "speedup",
                "threads", "size_bytes", "baseline_size_bytes", "latency_note", "selection_note",
                "search_stop", "reason")


def _profile_section(name: str, profile: dict[str, Any]) -> str:
    summary = "".join(f"<tr><th>{k}</th><td>{_cell(profile.get(k))}</td></tr>"
                      for k in SUMMARY_KEYS if k in profile)
    parity = html.escape(json.dumps(profile.get("parity", {})))
    plot = tradeoff_plot(profile) if profile["candidates"] else ""
    image = f"<img alt='tradeoff' src='data:image/png;base64,{plot}'>" if plot else ""
    return (f"<h2>{html.escape(name)}</h2><table>{summary}</table><p>parity: {parity}</p>"
            f"{image}<h3>candidates</h3>{_table(profile['candidates'], CANDIDATE_COLUMNS)}")


STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:left}"
         "tr.chosen{background:#d9f0d3}tr.rejected{background:#fde0dc}"
         "tr.failed{background:#eee}")


def _pairs(doc: dict[str, Any]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                               for k, v in doc.items()) + "</table>"


def search_html(doc: dict[str, Any]) -> str:
    """The data splits, the prune search's trials and the time budget, readable."""
    splits = dict(doc.get("splits") or {})
    used = splits.pop("used_for", {})
    search = doc.get("search") or {}
    budget = search.get("budget") or {}
    phases = budget.get("phases_s", {})
    trials = search.get("trials")
    tried = (_table(trials, TRIAL_COLUMNS) + f"<p>stopped: {_cell(search.get('stop'))}</p>"
             if trials is not None else f"<p>ratios (list): {_cell(search.get('ratios'))}</p>")
    stops = "".join(f"<li>{html.escape(s)}</li>" for s in budget.get("stopped_by_budget", []))
    return (f"<h2>data splits</h2>{_pairs(splits)}{_pairs(used)}"
            f"<h2>search ({_cell(search.get('mode'))})</h2>{tried}"
            f"<h3>time budget: {_cell(budget.get('used_s'))} s of "
            f"{_cell(budget.get('budget_s'))} s</h3>{_pairs(phases)}"
            + (f"<ul>{stops}</ul>" if stops else ""))


def write_html(doc: dict[str, Any], path: Path) -> Path:
    """Write the readable report with one tradeoff plot per profile."""
    head = {k: doc.get(k) for k in ("model", "data", "metric", "baseline_metric",
                                    "selection_baseline_metric", "tolerance", "latency_source",
                                    "created_at", "duration_s")}
    intro = "".join(f"<tr><th>{k}</th><td>{_cell(v)}</td></tr>" for k, v in head.items())
    students = _table(doc.get("students", []), ("key", "prune", "distill"))
    sections = "".join(_profile_section(n, p) for n, p in doc["profiles"].items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit build report"
            f"</title><style>{STYLE}</style></head><body><h1>edgekit build report</h1>"
            f"<table>{intro}</table>{search_html(doc)}<h2>students</h2>{students}{sections}"
            "</body></html>")
    atomic_write(path, page.encode("utf-8"))
    return path
