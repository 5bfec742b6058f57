"""Samples for retraining: the ``samples`` rows of a fleet (and model version) as one .npz.

Arrays (one entry per sample, oldest first): ``inputs`` (the inputs stacked, in their
own dtype; only samples of the most common shape are kept, the others counted in
``meta``), ``predictions`` (class index, -1 if none), ``confidence`` (NaN if none),
``reason``, ``device``, ``time`` (Unix seconds), ``seq`` and ``meta`` (a JSON
string: filters, counts). Loads with plain ``numpy.load`` (no pickles). At most
``limit`` samples, the newest, are exported (the store's retention bounds the rest).

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
from cloud_sync.store.schema import samples

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
    query = sa.select(c.device_id, c.seq, c.ts, c.reason, c.pred_class, c.pred_confidence,
                      c.input_dtype, c.input_shape, c.input_data).where(c.fleet == f.fleet)
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


def export_samples(conn: Connection, f: SampleFilter, out: Path) -> dict[str, Any]:
    """Write the samples matching ``f`` to ``out`` (.npz, written atomically); returns
    ``meta`` (counts and filters)."""
    rows = list(reversed(conn.execute(_query(f)).all()))
    try:
        kept, inputs = _inputs(rows)
    except (TypeError, ValueError) as exc:
        raise CloudError(f"samples export: a stored input cannot be read ({exc})") from None
    meta = {"fleet": f.fleet, "model": f.model_name, "version": f.model_version,
            "since": f.since, "reason": f.reason, "limit": f.limit, "samples": len(kept),
            "skipped_other_shapes": len(rows) - len(kept)}
    out = Path(out)
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
        meta=np.array(json.dumps(meta)))
    os.replace(tmp, out)
    return meta


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
