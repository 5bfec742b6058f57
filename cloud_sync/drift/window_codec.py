"""``WindowCounts`` as plain JSON and back, exactly (integer counts, float sums), for the
per-device window aggregates ingest keeps (``cloud_sync.store.windows``).

The document holds the counts only; a window's scope and bounds are its row's key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloud_sync.drift.task_counts import DetectionCounts, TaskCounts, ValueCounts
from cloud_sync.drift.window import WindowCounts

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
