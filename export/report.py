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


def png_base64(fig: Any) -> str:
    """A matplotlib figure as base64 PNG text."""
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
    encoded = png_base64(fig)
    plt.close(fig)
    return encoded


SENSITIVITY_BARS = 20  # the most sensitive layers drawn; report.json lists them all
KEPT_COLOUR, QUANTIZED_COLOUR = "#d73027", "#4575b4"
MIXED_COLUMNS = ("id", "variant", "layers_in_float", "status", "metric", "latency_ms",
                 "int8_latency_ms", "latency_cost_ms")


def sensitivity_plot(run: dict[str, Any]) -> str:
    """Per-layer sensitivity of one int8 file: the metric drop and the output error with
    only that layer in int8, most sensitive first; layers kept in float in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = run["sensitivity"]["layers"][:SENSITIVITY_BARS][::-1]
    kept = set(run.get("keep_float") or [])
    colours = [KEPT_COLOUR if r["layer"] in kept else QUANTIZED_COLOUR for r in rows]
    names = [r["layer"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.25 * len(rows)), sharey=True)
    left.barh(names, [r["drop"] for r in rows], color=colours)
    left.set(xlabel="metric drop with only this layer in int8 (selection split)",
             title="per-layer sensitivity (red: kept in float)")
    right.barh(names, [max(r["output_error"], 1e-12) for r in rows], color=colours)
    right.set(xscale="log", xlabel="relative output error", title="output error")
    left.tick_params(axis="y", labelsize=7)
    # drops of 1e-4: few ticks, one shared exponent, never overlapping labels
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    left.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.2g}"))
    encoded = png_base64(fig)
    plt.close(fig)
    return encoded


def mixed_html(profile: dict[str, Any]) -> str:
    """Each mixed-precision run: why it ran, the sensitivity chart, the layers kept in
    float and each mixed candidate's metric and latency next to full int8's."""
    parts = []
    for run in profile.get("mixed_precision") or []:
        head = (f"<h3>int8 recovery from {_cell(run.get('candidate'))}</h3>"
                f"<p>{_cell(run.get('trigger'))}; floor {_cell(run.get('floor'))}</p>")
        if run.get("error"):
            parts.append(f"{head}<p>{_cell(run['error'])}</p>")
            continue
        sens = run.get("sensitivity") or {}
        mixed = ""
        if sens:
            chart = (f"<img alt='sensitivity' src='data:image/png;base64,"
                     f"{sensitivity_plot(run)}'>" if sens.get("layers") else "")
            kept = _cell(run.get("keep_float")) or "none within the floor"
            mixed = (f"<p>mixed precision: layers kept in float: {kept} (ranked in "
                     f"{_cell(sens.get('seconds'))} s; stopped: "
                     f"{_cell(run.get('stopped')) or 'n/a'})</p>{chart}")
        parts.append(f"{head}{mixed}{qat_html(run.get('qat'))}"
                     f"{_table(run.get('tried') or [], MIXED_COLUMNS)}")
    return "".join(parts)


def qat_html(qat: dict[str, Any] | None) -> str:
    """What quantization-aware training did: epochs, the fake-quantized metric per epoch
    (epoch 0: before training), the folded batch norms and the seconds; or why not."""
    if not qat:
        return ""
    why = f"<p>QAT ran because {_cell(qat['why'])}.</p>" if qat.get("why") else ""
    skipped = (f"<p>no QAT candidate: {_cell(qat['skipped'])}</p>" if qat.get("skipped")
               else f"<p>{_cell(qat['note'])}</p>" if qat.get("note") else "")
    if not qat.get("history"):  # it never started
        return why + skipped
    per_epoch = ", ".join(f"{h['epoch']}: {_text(h['metric'])}" for h in qat["history"])
    short = f" ({_cell(qat['shortened'])})" if qat.get("shortened") else ""
    return (f"{why}<p>quantization-aware training: {_cell(qat.get('epochs_run'))} epoch(s)"
            f"{short} in "
            f"{_cell(qat.get('seconds'))} s, best epoch {_cell(qat.get('best_epoch'))} "
            f"(stopped by: {_cell(qat.get('stopped_by')) or 'epochs'}); fake-quantized metric "
            f"per epoch {html.escape(per_epoch)}; batch norms folded: "
            f"{_cell(qat.get('folded_batch_norms')) or 'none'}</p>{skipped}")


def _text(value: Any) -> str:
    """A value as a person reads it: floats to 4 significant digits, mappings as
    ``key value`` pairs and lists joined, never a Python or JSON literal."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _cell(value: Any) -> str:
    return html.escape(_text(value))


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr class='{}'>".format(html.escape(str(r.get("status", "")))) +
                   "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SUMMARY_KEYS = ("status", "bundle", "format", "precision", "method", "keep_float",
                "prune_ratio", "metric",
                "baseline_metric", "metric_split", "selection_metric",
                "selection_baseline_metric", "latency_ms", "baseline_latency_ms", "speedup",
                "threads", "size_bytes", "baseline_size_bytes", "latency_note", "selection_note",
                "search_stop", "reason")


def parity_text(parity: dict[str, Any]) -> str:
    """The chosen file's parity with the torch model it came from, as a sentence."""
    def pair(p: dict[str, Any]) -> str:
        text = f"max |difference| of outputs {_text(p.get('max_abs_diff'))}"
        if p.get("top1_agreement") is not None:
            text += f", top-1 agreement {_text(p['top1_agreement'])}"
        if p.get("detection_agreement") is not None:
            text += (f", images whose detections match {_text(p['detection_agreement'])} "
                     f"(count off by at most {_text(p.get('max_count_diff'))}, lowest IoU "
                     f"{_text(p.get('min_iou'))}, largest score difference "
                     f"{_text(p.get('max_score_diff'))})")
        return text

    if not parity:
        return "not measured"
    text = f"the file against the original model on the selection split: {pair(parity)}"
    own = parity.get("export")
    if own and own != {k: v for k, v in parity.items() if k != "export"}:  # a pruned student
        text += f"; against its own (pruned, distilled) torch student: {pair(own)}"
    return text


STUDENT_COLUMNS = ("student", "grown from", "pruned", "MACs", "params",
                   "best metric (selection)",
                   "epochs (best / run)", "stopped by", "trained in", "distill s")


def pruned_text(prune: dict[str, Any]) -> str:
    """What pruning removed, readable: channels, or each attention shape's heads and
    feed-forward width before and after, with how many blocks have it."""
    if not prune:
        return "–"
    blocks = prune.get("attention")
    if not blocks:
        return prune.get("structure", "channels")
    shapes: dict[str, int] = {}
    for b in blocks:
        ffn = f", feed-forward {b['ffn_before']} → {b['ffn']}" if b.get("ffn") else ""
        text = f"heads {b['heads_before']} → {b['heads']}{ffn}"
        shapes[text] = shapes.get(text, 0) + 1
    return "; ".join(f"{text} ({n} block{'s' if n > 1 else ''})" for text, n in shapes.items())


def student_row(student: dict[str, Any]) -> dict[str, Any]:
    """One student's prune and distill figures as table cells."""
    prune, distill = student.get("prune") or {}, student.get("distill") or {}
    macs = prune.get("macs_after")
    params = prune.get("params_after")
    history = distill.get("history") or []
    return {"student": student.get("key"), "grown from": prune.get("from", "–"),
            "pruned": pruned_text(prune),
            "MACs": f"{macs / 1e6:.1f}M" if macs else "original",
            "params": f"{params / 1e3:.0f}k" if params else "original",
            "best metric (selection)": distill.get("best_metric", "–"),
            "epochs (best / run)": (f"{distill['best_epoch']} / {distill['epochs_run']}"
                                    if "epochs_run" in distill else "–"),
            "stopped by": distill.get("stopped_by") or ("all epochs" if distill else "–"),
            "trained in": (distill.get("memory_format") or {}).get("memory_format", "–"),
            "distill s": round(sum(h.get("seconds") or 0 for h in history), 1) if history
            else "–"}


def _profile_section(name: str, profile: dict[str, Any]) -> str:
    summary = "".join(f"<tr><th>{k}</th><td>{_cell(profile.get(k))}</td></tr>"
                      for k in SUMMARY_KEYS if k in profile)
    parity = html.escape(parity_text(profile.get("parity") or {}))
    plot = tradeoff_plot(profile) if profile["candidates"] else ""
    image = f"<img alt='tradeoff' src='data:image/png;base64,{plot}'>" if plot else ""
    return (f"<h2>{html.escape(name)}</h2><table>{summary}</table><p>parity: {parity}</p>"
            f"{task_html(profile)}{image}{mixed_html(profile)}<h3>candidates</h3>"
            f"{_table(profile['candidates'], CANDIDATE_COLUMNS)}")


def task_html(profile: dict[str, Any]) -> str:
    """The task's figures, shipped file vs original model on the gate split, and its picture."""
    figures = profile.get("task_figures")
    if not figures:
        return ""
    shipped, original = figures.get("shipped") or {}, figures.get("original") or {}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td>"
                   f"<td>{_cell(original.get(k))}</td></tr>" for k, v in shipped.items())
    picture = profile.get("task_picture")
    img = (f"<p><img alt='detections on one gate image' src='data:image/png;base64,{picture}'>"
           "</p>") if picture else ""
    return (f"<h3>task figures (gate split)</h3><table><tr><th></th><th>shipped file</th>"
            f"<th>original model</th></tr>{rows}</table>{img}")


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
    head = {"task": (doc.get("task") or {}).get("kind", "classification")}
    head.update({k: doc.get(k) for k in ("model", "data", "metric", "baseline_metric",
                                    "selection_baseline_metric", "created_at", "duration_s")})
    head["tolerance"] = (doc.get("tolerance") or {}).get("described")
    head["latency measured on"] = (doc.get("latency_source") or {}).get("description")
    intro = "".join(f"<tr><th>{k}</th><td>{_cell(v)}</td></tr>" for k, v in head.items())
    students = _table([student_row(s) for s in doc.get("students", [])], STUDENT_COLUMNS)
    sections = "".join(_profile_section(n, p) for n, p in doc["profiles"].items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit build report"
            f"</title><style>{STYLE}</style></head><body><h1>edgekit build report</h1>"
            f"<table>{intro}</table>{search_html(doc)}<h2>students</h2>{students}{sections}"
            "</body></html>")
    atomic_write(path, page.encode("utf-8"))
    return path
