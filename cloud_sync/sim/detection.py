"""Simulated detector output: frames of boxes whose boxes are correlated within a frame,
counted into telemetry's ``detection`` block by the agent's own counting function
(``edge_agent.tasks.stats.detection_counts``), and a matching reference.

A frame is a scene: it draws its number of boxes from an over-dispersed law (a gamma-
mixed Poisson), one scene class that most of its boxes share, one object scale and one
image quality that sets every box's score. So the boxes of one frame are far from
independent draws, as in real footage; the drift tests use this to show that counting
boxes as samples cries wolf while counting frames does not.

Modes: ``normal`` (the reference's law), ``drifted`` (another class mix, smaller and
less sure boxes), ``none`` (a detector that finds nothing) and ``everywhere`` (one that
finds dozens of low-score boxes in every frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.contracts.reference import DetectionReference, ReferenceStats
from edge_agent.contracts.telemetry import DetectionWindow, SampleDetection
from edge_agent.tasks.detection import Detections
from edge_agent.tasks.stats import AREA_EDGES, COUNT_EDGES, SCORE_EDGES, detection_counts

MODES = ("normal", "drifted", "none", "everywhere")


@dataclass(frozen=True)
class DetectorWorld:
    """What the simulated detector sees: classes, image size and how scenes vary."""

    num_classes: int = 4
    input_size: tuple[int, int] = (64, 64)
    mean_boxes: float = 2.0
    dispersion: float = 1.5
    """Gamma shape of the per-frame box rate (smaller: more varied counts per frame)."""
    same_scene: float = 0.85
    """Chance that a box takes its frame's scene class."""
    class_shares: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    labels: tuple[str, ...] = ("car", "person", "bike", "dog")


def _frame(rng: np.random.Generator, w: DetectorWorld, mode: str) -> Detections:
    shares = np.asarray(w.class_shares, dtype=float)
    scale, quality = rng.lognormal(np.log(0.15), 0.4), rng.beta(6, 2)
    if mode == "drifted":
        shares, scale, quality = shares[::-1], scale * 0.5, quality * 0.7
    rate = rng.gamma(w.dispersion, w.mean_boxes / w.dispersion)
    count = {"none": 0, "everywhere": int(rng.integers(40, 60))}.get(mode, rng.poisson(rate))
    if mode == "everywhere":
        scale, quality = 0.05, 0.35
    scene = rng.choice(w.num_classes, p=shares / shares.sum())
    classes = np.where(rng.random(count) < w.same_scene, scene,
                       rng.choice(w.num_classes, size=count, p=shares / shares.sum()))
    height, width = w.input_size
    side = np.clip(scale * rng.lognormal(0, 0.1, count), 0.02, 0.9)
    x1, y1 = rng.uniform(0, 1 - side), rng.uniform(0, 1 - side)
    boxes = np.stack([x1 * width, y1 * height, (x1 + side) * width, (y1 + side) * height], 1)
    scores = np.clip(quality + rng.normal(0, 0.05, count), 0.25, 1.0)
    return Detections(boxes.astype(np.float32).reshape(-1, 4), scores.astype(np.float32),
                      classes.astype(np.int64))


def draw_frames(rng: np.random.Generator, world: DetectorWorld, frames: int,
                mode: str = "normal") -> list[Detections]:
    """``frames`` frames of detections in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown detector mode {mode!r}; one of {', '.join(MODES)}")
    return [_frame(rng, world, mode) for _ in range(frames)]


def window_of(found: list[Detections], world: DetectorWorld) -> DetectionWindow:
    """Telemetry's ``detection`` block of these frames (the agent's counting)."""
    counts = detection_counts(found, world.num_classes, world.input_size)
    scores = np.concatenate([d.scores for d in found]) if found else np.zeros(0)
    return DetectionWindow(
        frames=len(found), empty_frames=sum(1 for d in found if len(d) == 0),
        count_edges=list(COUNT_EDGES), count_hist=counts["count_hist"],
        score_edges=list(SCORE_EDGES), score_hist=counts["score_hist"],
        class_counts=counts["class_counts"], area_edges=list(AREA_EDGES),
        area_hist=counts["area_hist"],
        mean_score=round(float(scores.mean()), 6) if len(scores) else None)


def detection_window(rng: np.random.Generator, world: DetectorWorld, frames: int,
                     mode: str = "normal") -> DetectionWindow:
    """One telemetry ``detection`` block of ``frames`` simulated frames."""
    return window_of(draw_frames(rng, world, frames, mode), world)


def detection_reference(world: DetectorWorld = DetectorWorld(), frames: int = 2000,
                        seed: int = 7) -> ReferenceStats:
    """Reference statistics of ``frames`` normal frames (as the build computes them)."""
    window = detection_window(np.random.default_rng(seed), world, frames)
    boxes = sum(window.class_counts)
    return ReferenceStats(n=frames, detection=DetectionReference(
        count_edges=window.count_edges, count_hist=window.count_hist,
        score_edges=window.score_edges, score_hist=window.score_hist,
        class_distribution=[c / boxes for c in window.class_counts],
        area_edges=window.area_edges, area_hist=window.area_hist,
        mean_count=boxes / frames))


def sample_detections(found: Detections) -> list[SampleDetection]:
    """A frame's detections as a sample carries them (protocol 1.3)."""
    return [SampleDetection(box=[round(float(v), 2) for v in box], score=round(float(s), 4),
                            class_index=int(c))
            for box, s, c in zip(found.boxes, found.scores, found.classes, strict=True)]
