"""One simulated device: its ids, per-kind seq counters and the messages it sends.

Messages are the protocol's own classes (``edge_agent.protocol``), so the simulator
speaks exactly what agents speak. Status seqs follow the agent's rule: each
connection reserves a block of ``STATUS_BLOCK`` seqs and the last will takes the
block's last number.
"""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from cloud_sync.sim import detection
from cloud_sync.sim.reference import Drift, Shares, draw_window, shares, synthetic_reference
from edge_agent import protocol as p
from edge_agent.agent import STATUS_BLOCK
from edge_agent.contracts import (
    ConfidenceHist,
    EncodedInput,
    InputHist,
    LatencyMs,
    ModelRef,
    ModelState,
    Prediction,
    ReferenceStats,
)

AGENT_VERSION = "sim"
INPUT_VALUES = 64  # input values per inference per channel (for the histogram's totals)


@dataclass
class Model:
    """What every simulated device serves, and the reference it draws from."""

    name: str
    version: str
    ref: ReferenceStats
    normal: Shares
    drifted: Shares
    profile: str = "x86-64"  # the bundle's profile; the built-in reference says x86-64
    detector: detection.DetectorWorld | None = None
    """Set for a simulated detector: telemetry carries ``detection``, samples detections."""


def detector_model(name: str = "sim-detector", version: str = "1") -> Model:
    """A simulated detector: the synthetic input reference plus a detection reference."""
    world = detection.DetectorWorld()
    ref = synthetic_reference()
    ref.output = None
    ref.detection = detection.detection_reference(world).detection
    base = synthetic_reference()
    return Model(name, version, ref, shares(base), shares(base, Drift()), detector=world)


@dataclass
class SimDevice:
    """A device's identity and counters; ``drifted`` switches its sampling shares."""

    device_id: str
    fleet: str
    model: Model
    rng: np.random.Generator
    username: str | None = None
    password: str | None = None
    drifted: bool = False
    connection: int = 0
    seqs: dict[str, int] = field(default_factory=dict)

    def topic(self, kind: str) -> str:
        """This device's topic of ``kind``."""
        return p.topic(self.fleet, self.device_id, kind)

    def _next(self, kind: str) -> int:
        seq = self.seqs.get(kind, 0)
        self.seqs[kind] = seq + 1
        return seq

    def _status(self, seq: int, state: str, reason: str = "") -> bytes:
        return p.Status(device_id=self.device_id, seq=seq, ts=time.time(), state=state,
                        model=ModelRef(name=self.model.name, version=self.model.version),
                        agent_version=AGENT_VERSION, reason=reason, profile=self.model.profile,
                        detail={"simulated": True}).to_json()

    def new_connection(self) -> bytes:
        """Reserve this connection's status block; returns its last-will payload."""
        self.connection += 1
        self.seqs[p.STATUS] = self.connection * STATUS_BLOCK
        return self._status(self.connection * STATUS_BLOCK + STATUS_BLOCK - 1, "offline",
                            "connection_lost")

    def status(self, state: str, reason: str = "") -> bytes:
        """The next status message of this connection."""
        return self._status(self._next(p.STATUS), state, reason)

    def telemetry(self, window_s: float, inferences: int) -> bytes:
        """One telemetry window drawn from the (possibly drifted) reference."""
        shares = self.model.drifted if self.drifted else self.model.normal
        ref = self.model.ref
        per_channel, below, above, classes, conf = draw_window(self.rng, shares, inferences,
                                                               INPUT_VALUES)
        lat = float(self.rng.gamma(4.0, 0.5))
        world = self.model.detector
        if world is not None:
            found = detection.detection_window(self.rng, world, inferences,
                                               "drifted" if self.drifted else "normal")
            classes, confidence = {}, None
        else:
            found = None
            confidence = ConfidenceHist(edges=list(ref.output.confidence_edges), counts=conf,
                                        mean=_mean(ref.output.confidence_edges, conf))
        return p.Telemetry(
            device_id=self.device_id, seq=self._next(p.TELEMETRY), ts=time.time(),
            model=ModelState(name=self.model.name, version=self.model.version),
            window_s=window_s, inferences=inferences, errors=0,
            latency_ms=LatencyMs(p50=round(lat, 3), p95=round(lat * 1.6, 3),
                                 p99=round(lat * 2.2, 3)),
            confidence=confidence, class_counts=classes, detection=found,
            input_hist=InputHist(bin_edges=list(ref.input.bin_edges),
                                 channel_axis=ref.input.channel_axis, below=below, above=above,
                                 per_channel=per_channel)).to_json()

    def sample(self) -> bytes:
        """One kept input (random values in the reference range) with a low confidence (a
        detector's: an image of its input size with one frame's detections)."""
        channels = len(self.model.ref.input.per_channel)
        low, high = self.model.ref.input.range
        world = self.model.detector
        size = tuple(world.input_size) if world else (4, 4)
        data = self.rng.uniform(low, high, size=(1, channels, *size)).astype("<f4")
        prediction, found = None, None
        if world is not None:
            found = detection.sample_detections(detection.draw_frames(self.rng, world, 1)[0])
        else:
            prediction = Prediction(class_index=int(self.rng.integers(0, 10)),
                                    confidence=round(float(self.rng.uniform(0.2, 0.5)), 3))
        return p.Sample(
            device_id=self.device_id, seq=self._next(p.SAMPLES), ts=time.time(),
            model=ModelRef(name=self.model.name, version=self.model.version),
            reason="low_confidence", prediction=prediction, detections=found,
            input=EncodedInput(dtype="float32", shape=list(data.shape),
                               data=base64.b64encode(data.tobytes()).decode("ascii"))).to_json()


def _mean(edges: list[float], counts: list[int]) -> float | None:
    total = sum(counts)
    if not total:
        return None
    centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return round(min(1.0, sum(c * n for c, n in zip(centres, counts, strict=True)) / total), 4)
