"""Samples for retraining: the ``samples`` rows of a fleet (and model version), in one of
``FORMATS``: ``npz`` (one file, below) or ``coco`` (a folder of PNG images and a COCO JSON
whose annotations are the device's detections, for CVAT / Label Studio:
``cloud_sync.samples_coco``).

The .npz's arrays (one entry per sample, oldest first): ``inputs`` (the inputs stacked, in their
own dtype; only samples of the most common shape are kept, the others counted in
``meta``), ``predictions`` (class index, -1 if none), ``confidence`` (NaN if none),
``reason``, ``device``, ``time`` (Unix seconds), ``seq``, ``detections`` (a detector's
boxes as a JSON string per sample: ``[{"box": [x1, y1, x2, y2], "score", "class"}]``,
``"null"`` for other models) and ``meta`` (a JSON string: filters, counts). Loads with
plain ``numpy.load`` (no pickles). At most ``limit`` samples, the newest, are exported
(the store's retention bounds the rest).

Exports accumulate in ``<data_dir>/exports`` (one .npz and one evidence file per
trigger); ``prune_exports`` (run by retention) bounds that folder by age and size.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.errors import CloudError
from cloud_sync.samples_coco import write_coco
from cloud_sync.store.schema import bundles, models, samples

DEFAULT_LIMIT = 10_000
KEEP_NEWER_S = 3600.0  # the size cap never takes files younger: an action may be reading them


@dataclass(frozen=True)
class SampleFilter:
    """Which samples to export."""

    fleet: str
    model_name: str | None = None
    model_version: str | None = None
    since: float | None = None
    reason: str | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise CloudError(f"samples export limit must be >= 0, got {self.limit}")
        if self.model_version is not None and self.model_name is None:
            raise CloudError("samples export: --version needs --model")


def _query(f: SampleFilter) -> sa.Select:
    c = samples.c
    query = sa.select(c.device_id, c.incarnation, c.seq, c.ts, c.reason, c.pred_class,
                      c.pred_confidence, c.input_dtype, c.input_shape, c.input_data,
                      c.model_name, c.model_version, c.payload).where(c.fleet == f.fleet)
    for column, value in ((c.model_name, f.model_name), (c.model_version, f.model_version),
                          (c.reason, f.reason)):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(c.ts >= f.since)
    return query.order_by(c.ts.desc(), c.id.desc()).limit(f.limit)


def _inputs(rows: list[Any]) -> tuple[list[Any], np.ndarray]:
    shapes = Counter((r.input_dtype, tuple(r.input_shape)) for r in rows)
    if not shapes:
        return [], np.zeros((0,), dtype=np.float32)
    (dtype, shape), _count = shapes.most_common(1)[0]
    kept = [r for r in rows if (r.input_dtype, tuple(r.input_shape)) == (dtype, shape)]
    arrays = [np.frombuffer(r.input_data, dtype=np.dtype(dtype).newbyteorder("<"))
              .reshape(shape) for r in kept]
    return kept, np.stack(arrays).astype(np.dtype(dtype))


def export_samples(conn: Connection, f: SampleFilter, out: Path,
                   fmt: str = "npz") -> dict[str, Any]:
    """Write the samples matching ``f`` to ``out`` in format ``fmt`` (``FORMATS``); returns
    ``meta`` (counts and filters)."""
    if fmt not in FORMATS:
        raise CloudError(f"samples export: unknown format {fmt!r}; one of "
                         f"{', '.join(FORMATS)}")
    rows = list(reversed(conn.execute(_query(f)).all()))
    try:
        kept, inputs = _inputs(rows)
    except (TypeError, ValueError) as exc:
        raise CloudError(f"samples export: a stored input cannot be read ({exc})") from None
    meta = {"fleet": f.fleet, "model": f.model_name, "version": f.model_version,
            "since": f.since, "reason": f.reason, "limit": f.limit, "samples": len(kept),
            "skipped_other_shapes": len(rows) - len(kept), "format": fmt}
    return {**meta, **FORMATS[fmt](conn, kept, inputs, Path(out), meta)}


def _write_npz(conn: Connection, kept: list[Any], inputs: np.ndarray, out: Path,
               meta: dict[str, Any]) -> dict[str, Any]:
    """The .npz (written atomically; see the module doc)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(
        tmp, inputs=inputs,
        predictions=np.array([-1 if r.pred_class is None else r.pred_class for r in kept],
                             dtype=np.int64),
        confidence=np.array([np.nan if r.pred_confidence is None else r.pred_confidence
                             for r in kept], dtype=np.float64),
        reason=np.array([r.reason for r in kept], dtype=str),
        device=np.array([r.device_id for r in kept], dtype=str),
        time=np.array([r.ts for r in kept], dtype=np.float64),
        seq=np.array([r.seq for r in kept], dtype=np.int64),
        detections=np.array([json.dumps(_payload(r.payload).get("detections"))
                             for r in kept], dtype=str),
        meta=np.array(json.dumps(meta)))
    os.replace(tmp, out)
    return {}


def labels_of(conn: Connection, name: str | None, version: str | None) -> list[str]:
    """The class labels of a published model version's detector task (or its plain
    ``labels``), empty when unknown."""
    if not name or not version:
        return []
    query = (sa.select(bundles.c.manifest).join(models, models.c.id == bundles.c.model_id)
             .where(models.c.name == name, models.c.version == version).limit(1))
    manifest = conn.execute(query).scalar() or {}
    task = manifest.get("task") or {}
    return list((task.get("detection") or {}).get("labels") or manifest.get("labels") or [])


def _payload(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _write_coco(conn: Connection, kept: list[Any], inputs: np.ndarray, out: Path,
                meta: dict[str, Any]) -> dict[str, Any]:
    """A folder of PNGs and a COCO JSON with the devices' detections as annotations."""
    items = [{"name": f"{r.device_id}-{r.incarnation or 'legacy'}-{r.seq}", "input": inputs[i],
              "detections": _payload(r.payload).get("detections"), "device": r.device_id,
              "time": r.ts, "reason": r.reason} for i, r in enumerate(kept)]
    versions = {(r.model_name, r.model_version) for r in kept}
    name, version = next(iter(versions)) if len(versions) == 1 else (None, None)
    labels = labels_of(conn, meta["model"] or name, meta["version"] or version)
    return write_coco(out, items, labels, {"description": "edgekit samples", **meta})


FORMATS = {"npz": _write_npz, "coco": _write_coco}


def prune_exports(folder: Path, max_age_s: float, max_bytes: int, now: float,
                  keep_newer_s: float = KEEP_NEWER_S) -> int:
    """Delete the files of ``folder`` modified more than ``max_age_s`` ago, then the
    oldest others while the folder holds more than ``max_bytes`` (files younger than
    ``keep_newer_s`` stay); returns how many were deleted."""
    files = []
    for path in Path(folder).glob("*") if Path(folder).is_dir() else ():
        try:
            st = path.stat()
        except OSError:  # deleted meanwhile
            continue
        if path.is_file():
            files.append((st.st_mtime, st.st_size, path))
    files.sort()
    total = sum(size for _mtime, size, _path in files)
    deleted = 0
    for mtime, size, path in files:
        too_old = now - mtime > max_age_s
        if not too_old and (total <= max_bytes or now - mtime < keep_newer_s):
            continue
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted
