"""``WindowCounts`` as plain JSON and back, exactly (integer counts, float sums), for the
per-device window aggregates ingest keeps (``cloud_sync.store.windows``).

The document holds the counts only; a window's scope and bounds are its row's key.
``doc_of`` and ``add_docs`` give the same documents as ``to_doc`` of ``from_telemetry`` and
of ``pool``, in plain Python on lists (ingest sums every message this way; tested equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloud_sync.drift.task_counts import DetectionCounts, TaskCounts, ValueCounts
from cloud_sync.drift.window import DriftError, WindowCounts
from edge_agent.protocol import Telemetry

DETECTION_HISTS = ("count_hist", "score_hist", "class_counts", "area_hist")
DETECTION_EDGES = ("count_edges", "score_edges", "area_edges")


def _ints(values: np.ndarray | None) -> list | None:
    return None if values is None else values.tolist()


def _array(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.int64)


def _edges(values: tuple[float, ...] | list | None) -> list | tuple | None:
    return None if values is None else list(values)


def _tuple(values: list | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)


def _detection_doc(d: DetectionCounts) -> dict[str, Any]:
    return {"frames": d.frames, "empty_frames": d.empty_frames, "score_sum": d.score_sum,
            **{k: list(getattr(d, k)) for k in DETECTION_EDGES},
            **{k: getattr(d, k).tolist() for k in DETECTION_HISTS}}


def _detection(doc: dict[str, Any]) -> DetectionCounts:
    return DetectionCounts(frames=doc["frames"], empty_frames=doc["empty_frames"],
                           score_sum=doc["score_sum"],
                           **{k: tuple(doc[k]) for k in DETECTION_EDGES},
                           **{k: np.asarray(doc[k], dtype=np.int64) for k in DETECTION_HISTS})


def to_doc(window: WindowCounts) -> dict[str, Any]:
    """The counts of ``window`` as JSON-ready values."""
    tasks = window.tasks
    return {
        "inferences": window.inferences, "messages": window.messages,
        "input_inferences": window.input_inferences, "bin_edges": _edges(window.bin_edges),
        "input_counts": _ints(window.input_counts),
        "class_counts": {str(k): v for k, v in sorted(window.class_counts.items())},
        "confidence_edges": _edges(window.confidence_edges),
        "confidence_counts": _ints(window.confidence_counts),
        "confidence_sum": window.confidence_sum,
        "detection": None if tasks.detection is None else _detection_doc(tasks.detection),
        "values": {name: {"edges": list(v.edges), "counts": v.counts.tolist(),
                          "inferences": v.inferences, "value_sum": v.value_sum}
                   for name, v in sorted(tasks.values.items())},
    }


def from_doc(doc: dict[str, Any], scope: str, model_name: str, model_version: str,
             start: float, end: float, devices: frozenset[str] = frozenset()) -> WindowCounts:
    """The ``WindowCounts`` that ``to_doc`` wrote, with its scope, model and bounds."""
    tasks = TaskCounts(
        None if doc.get("detection") is None else _detection(doc["detection"]),
        {name: ValueCounts(tuple(v["edges"]), np.asarray(v["counts"], dtype=np.int64),
                           v["inferences"], v["value_sum"])
         for name, v in (doc.get("values") or {}).items()})
    return WindowCounts(
        scope=scope, model_name=model_name, model_version=model_version, start=start, end=end,
        inferences=doc["inferences"], messages=doc["messages"], devices=devices,
        input_inferences=doc["input_inferences"], bin_edges=_tuple(doc["bin_edges"]),
        input_counts=_array(doc["input_counts"]),
        class_counts={int(k): v for k, v in doc["class_counts"].items()},
        confidence_edges=_tuple(doc["confidence_edges"]),
        confidence_counts=_array(doc["confidence_counts"]),
        confidence_sum=doc["confidence_sum"], tasks=tasks)


# -- the same sums on the documents, in plain Python (ingest's hot path) ----------------


def doc_of(message: Telemetry) -> dict[str, Any]:
    """``to_doc(from_telemetry(message))``, without the arrays."""
    hist, conf = message.input_hist, message.confidence
    scored = sum(conf.counts) if conf is not None else 0
    if scored and conf.mean is None:
        raise DriftError(f"telemetry {message.device_id}#{message.seq}: confidence counts "
                         "without a mean")
    det = message.detection
    return {
        "inferences": message.inferences, "messages": 1,
        "input_inferences": message.inferences if hist is not None else 0,
        "bin_edges": list(hist.bin_edges) if hist is not None else None,
        "input_counts": None if hist is None else [
            [int(below), *map(int, row), int(above)]
            for below, row, above in zip(hist.below, hist.per_channel, hist.above,
                                         strict=True)],
        "class_counts": {str(k): int(v) for k, v in sorted(
            ((int(k), v) for k, v in message.class_counts.items() if v))},
        "confidence_edges": list(conf.edges) if conf is not None else None,
        "confidence_counts": list(map(int, conf.counts)) if conf is not None else None,
        "confidence_sum": ((conf.mean or 0.0) if conf is not None else 0.0) * scored,
        "detection": None if det is None else {
            "frames": det.frames, "empty_frames": det.empty_frames,
            "score_sum": (det.mean_score or 0.0) * sum(det.score_hist),
            **{k: list(getattr(det, k)) for k in DETECTION_EDGES},
            **{k: list(map(int, getattr(det, k))) for k in DETECTION_HISTS}},
        "values": {v.name: {"edges": list(v.edges), "counts": list(map(int, v.counts)),
                            "inferences": message.inferences,
                            "value_sum": (v.mean or 0.0) * sum(v.counts)}
                   for v in sorted(message.values, key=lambda v: v.name)},
    }


def _plus(a: list, b: list) -> list:
    return [x + y for x, y in zip(a, b, strict=True)]


def _hist(edges_a, counts_a, edges_b, counts_b, what: str):
    if counts_b is None:
        return edges_a, counts_a
    if counts_a is None:
        return edges_b, counts_b
    if edges_a != edges_b or len(counts_a) != len(counts_b) or (
            counts_a and isinstance(counts_a[0], list)
            and [len(r) for r in counts_a] != [len(r) for r in counts_b]):
        raise DriftError(f"{what} histograms on different bins or channels cannot be pooled")
    if counts_a and isinstance(counts_a[0], list):
        return edges_a, [_plus(x, y) for x, y in zip(counts_a, counts_b, strict=True)]
    return edges_a, _plus(counts_a, counts_b)


def _ragged(a: list, b: list) -> list:
    out = [0] * max(len(a), len(b))
    for i, v in enumerate(a):
        out[i] += v
    for i, v in enumerate(b):
        out[i] += v
    return out


def _detection_sum(a: dict | None, b: dict | None) -> dict | None:
    if a is None or b is None:
        return a if b is None else b
    if any(a[k] != b[k] for k in DETECTION_EDGES) or any(
            len(a[k]) != len(b[k]) for k in ("count_hist", "score_hist", "area_hist")):
        raise DriftError("detection histograms on different bins cannot be pooled")
    return {"frames": a["frames"] + b["frames"], "empty_frames": a["empty_frames"] +
            b["empty_frames"], "score_sum": a["score_sum"] + b["score_sum"],
            **{k: a[k] for k in DETECTION_EDGES},
            **{k: _plus(a[k], b[k]) for k in ("count_hist", "score_hist", "area_hist")},
            "class_counts": _ragged(a["class_counts"], b["class_counts"])}


def _values_sum(a: dict, b: dict) -> dict:
    out = dict(a)
    for name, v in b.items():
        if name not in out:
            out[name] = v
            continue
        w = out[name]
        if w["edges"] != v["edges"] or len(w["counts"]) != len(v["counts"]):
            raise DriftError("value histograms on different bins cannot be pooled")
        out[name] = {"edges": w["edges"], "counts": _plus(w["counts"], v["counts"]),
                     "inferences": w["inferences"] + v["inferences"],
                     "value_sum": w["value_sum"] + v["value_sum"]}
    return out


def add_docs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``to_doc(pool([from_doc(a), from_doc(b)]))`` on the documents (``DriftError``
    where ``pool`` raises one)."""
    edges, inputs = _hist(a["bin_edges"], a["input_counts"], b["bin_edges"], b["input_counts"],
                          "input")
    conf_edges, conf = _hist(a["confidence_edges"], a["confidence_counts"],
                             b["confidence_edges"], b["confidence_counts"], "confidence")
    classes = dict(a["class_counts"])
    for k, v in b["class_counts"].items():
        classes[k] = classes.get(k, 0) + v
    return {
        "inferences": a["inferences"] + b["inferences"], "messages": a["messages"] +
        b["messages"], "input_inferences": a["input_inferences"] + b["input_inferences"],
        "bin_edges": edges, "input_counts": inputs,
        "class_counts": {str(k): classes[str(k)] for k in sorted(map(int, classes))},
        "confidence_edges": conf_edges, "confidence_counts": conf,
        "confidence_sum": a["confidence_sum"] + b["confidence_sum"],
        "detection": _detection_sum(a.get("detection"), b.get("detection")),
        "values": dict(sorted(_values_sum(a.get("values") or {}, b.get("values") or {})
                              .items())),
    }
