"""``edgekit fleet sim``: N simulated devices over real MQTT connections, in a few processes.

Each process (a *shard*) runs its share of devices on one ``ClientLoop``: it connects
them (in waves, so the broker is not flooded with CONNECTs), publishes a retained
``online`` status, then one telemetry message per device every ``interval_s`` (each
device at its own random phase) and, with probability ``sample_chance``, a sample after
it. After ``drift_after_s`` the first ``drift_fraction`` of the devices draws from a
drifted reference. At the end every device says ``offline`` (reason ``stopped``),
waits for its PUBACKs and disconnects. Each shard reports what it published and what
the broker acknowledged.
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.broker_config import BrokerConfig
from edge_agent.errors import ConfigError

CONNECT_WAVE = 200
SIM_TASKS = ("classification", "detection")


@dataclass(frozen=True)
class Credential:
    """A device login from ``edgekit cloud device add --json``."""

    device_id: str
    fleet: str
    username: str
    password: str


@dataclass(frozen=True)
class SimSettings:
    """What to simulate; see ``edgekit fleet sim --help``."""

    broker: str
    fleet: str = "sim"
    devices: int = 10
    interval_s: float = 10.0
    duration_s: float = 60.0
    drift_after_s: float | None = None
    drift_fraction: float = 0.0
    bundle: Path | None = None
    credentials: tuple[Credential, ...] = ()
    processes: int = 1
    device_prefix: str = "sim-"
    inferences: int = 200
    sample_chance: float = 0.05
    seed: int = 0
    keepalive_s: int = 60
    task: str = "classification"
    """``classification`` (class counts, confidence) or ``detection`` (protocol 1.3
    ``detection`` blocks and samples with detections: ``cloud_sync.sim.detection``)."""

    def __post_init__(self) -> None:
        checks = {"devices": self.devices >= 1, "interval_s": self.interval_s > 0,
                  "duration_s": self.duration_s > 0, "processes": self.processes >= 1,
                  "drift_fraction": 0.0 <= self.drift_fraction <= 1.0,
                  "sample_chance": 0.0 <= self.sample_chance <= 1.0}
        bad = next((name for name, ok in checks.items() if not ok), None)
        if bad is not None:
            raise ConfigError(f"fleet sim setting {bad}={getattr(self, bad)!r} is out of range")
        if self.task not in SIM_TASKS:
            raise ConfigError(f"fleet sim task {self.task!r} is not one of "
                              f"{', '.join(SIM_TASKS)}")
        BrokerConfig.from_url(self.broker)  # a clear error for a bad URL, here


@dataclass
class SimReport:
    """What the simulated fleet did, summed over shards."""

    devices: int = 0
    connected: int = 0
    published: Counter = field(default_factory=Counter)
    acked: int = 0
    refused: int = 0
    connect_failures: int = 0
    drifted: int = 0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return {"devices": self.devices, "connected": self.connected,
                "published": dict(self.published), "published_total": sum(self.published.values()),
                "acked": self.acked, "refused": self.refused,
                "connect_failures": self.connect_failures, "drifted": self.drifted,
                "elapsed_s": round(self.elapsed_s, 2)}

    def add(self, other: dict) -> None:
        """Add one shard's report (``to_dict`` form)."""
        self.devices += other["devices"]
        self.connected += other["connected"]
        self.published.update(other["published"])
        self.acked += other["acked"]
        self.refused += other["refused"]
        self.connect_failures += other["connect_failures"]
        self.drifted += other["drifted"]


def read_credentials(path: Path) -> tuple[Credential, ...]:
    """Logins from a JSON object, a JSON list, or JSON lines (``cloud device add --json``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read credentials {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
        docs = doc if isinstance(doc, list) else [doc]
    except ValueError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ConfigError(f"credentials {path} are not JSON: {exc}") from None
    try:
        return tuple(Credential(d["device_id"], d["fleet"], d["username"], d["password"])
                     for d in docs)
    except (KeyError, TypeError):
        raise ConfigError(f"credentials {path}: each entry needs device_id, fleet, username and "
                          "password (as 'edgekit cloud device add --json' prints)") from None


def run_fleet(settings: SimSettings) -> SimReport:
    """Run the simulation in ``settings.processes`` processes; returns the summed report."""
    from cloud_sync.sim.shard import run_shard

    shards = min(settings.processes, settings.devices)
    start = time.monotonic()
    if shards == 1:
        results = [run_shard(settings, 0, 1)]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(shards) as pool:
            results = pool.starmap(run_shard, [(settings, i, shards) for i in range(shards)])
    report = SimReport()
    for result in results:
        report.add(result)
    report.elapsed_s = time.monotonic() - start
    return report


def schedule(devices: int, interval_s: float, start: float, rng) -> list[tuple[float, int]]:
    """A heap of (next telemetry time, device index), each device at a random phase."""
    heap = [(start + float(rng.uniform(0, interval_s)), i) for i in range(devices)]
    heapq.heapify(heap)
    return heap
