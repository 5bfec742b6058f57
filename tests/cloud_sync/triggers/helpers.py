"""Build the store's inputs for trigger tests: a published reference, simulated telemetry
rows (drawn from the reference or drifted) at chosen times, sample rows."""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from cloud_sync.sim.device import Model, SimDevice
from cloud_sync.sim.reference import Drift, shares, synthetic_reference
from cloud_sync.store import windows as stored_windows
from cloud_sync.store.rows import message_row, sample_row
from cloud_sync.store.schema import artifacts, bundles, models
from cloud_sync.store.windows import FUTURE_MARGIN_S
from cloud_sync.store.writes import insert_new_messages, insert_samples
from edge_agent import protocol

MODEL, VERSION = "sim-model", "1"


def sim_model() -> Model:
    ref = synthetic_reference()
    return Model(MODEL, VERSION, ref, shares(ref), shares(ref, Drift()))


def publish_reference(conn, name: str = MODEL, version: str = VERSION, profile: str = "x86",
                      reference: dict | None = None):
    """A models + artifacts + bundles row whose manifest carries ``reference`` (default: the
    synthetic reference the simulated devices draw from)."""
    model_id = conn.execute(sa.insert(models).values(
        name=name, version=version, published_at=0.0, metrics={}, lineage={})
        .returning(models.c.id)).scalar()
    sha = f"{model_id:064x}"
    conn.execute(sa.insert(artifacts).values(sha256=sha, size=1, path="/dev/null",
                                             created_at=0.0))
    conn.execute(sa.insert(bundles).values(
        sha256=sha, model_id=model_id, profile=profile, format="onnx", precision="fp32",
        size=1, created_at=0.0,
        manifest={"reference_stats": reference or synthetic_reference().to_dict()}))


def devices(count: int, fleet: str = "f1", drifted: int = 0, seed: int = 0,
            prefix: str = "dev-", version: str = VERSION) -> list[SimDevice]:
    """``count`` simulated devices, the first ``drifted`` of them drifted."""
    model = sim_model()
    model.version = version
    return [SimDevice(f"{prefix}{i:03d}", fleet, model, np.random.default_rng(seed + i),
                      drifted=i < drifted) for i in range(count)]


def telemetry_at(dev: SimDevice, ts: float, window_s: float, inferences: int) -> dict:
    """One telemetry message of ``dev`` ending at ``ts``, as the store row."""
    doc = json.loads(dev.telemetry(window_s, inferences))
    doc["ts"] = ts
    return message_row(dev.fleet, protocol.TELEMETRY, doc, ts)


def sample_at(dev: SimDevice, ts: float) -> dict:
    """One kept sample of ``dev`` at ``ts``, as the store row."""
    doc = json.loads(dev.sample())
    doc["ts"] = ts
    return sample_row(dev.fleet, doc, ts)


def store_windows(conn, devs: list[SimDevice], start: float, windows: int, window_s: float,
                  per_window: int = 2, inferences=200, samples: int = 0) -> None:
    """``per_window`` telemetry messages per device per window from ``start``; ``inferences``
    is a number or a function (device index, window) -> number."""
    rows, sample_rows = [], []
    for w in range(windows):
        for i, dev in enumerate(devs):
            size = inferences(i, w) if callable(inferences) else inferences
            for j in range(per_window):
                ts = start + w * window_s + (j + 0.5) * window_s / per_window
                rows.append(telemetry_at(dev, ts, window_s / per_window, size))
            sample_rows += [sample_at(dev, start + w * window_s + 0.1 * k) for k in range(samples)]
    keep_windows(conn, rows, window_s, start - FUTURE_MARGIN_S)
    insert_samples(conn, sample_rows)


def keep_windows(conn, rows: list[dict], window_s: float, since: float) -> None:
    """Store telemetry ``rows`` as ingest does: the new ones are added to their device
    windows of ``window_s``, which count as kept from ``since`` (a time in the test's
    past: the drift step then reads those windows from the rows, not from messages)."""
    new = set(insert_new_messages(conn, rows))
    fresh = [(r["fleet"], protocol.Telemetry.from_dict(r["payload"])) for r in rows
             if (r["device_id"], r["incarnation"], r["kind"], r["seq"]) in new]
    stored_windows.add(conn, lambda fleet: window_s, fresh, since)

