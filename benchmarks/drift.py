"""Drift detection on simulated fleets: false alarms with no drift, windows to detect shifts.

Data: scikit-learn's bundled digits (8x8, scaled to [0, 1]; no download). 400 digits
train the model (a LogisticRegression, whose probabilities give classes and
confidences); the other 1,397 are the population devices see with no drift; the
reference statistics are ``export.refstats.reference_stats`` of an 800-digit
calibration sample of that population. Device windows are counted by the device's
own code (``edge_agent.metrics.ModelMetrics``), sent as ``Telemetry`` messages (4 per
window) and summed by ``cloud_sync.drift.window.aggregate``.

Three input layouts: ``image`` (1x8x8, 64 pixels per channel per inference),
``image+exposure`` (the same with a per-image random gain and offset, as a camera's
exposure varies: pixels of one image strongly correlated), and ``features`` (64
channels of one value each per inference, as a tabular model; Bonferroni over 64).

Rules compared on the same windows: ours (``DriftConfig()`` defaults, any of the three
kinds), the same with naive sample sizes (every counted value a sample), and the
fixed rule "PSI > 0.25 on any input channel" (PSI with the usual 1e-4 share floor).

    .venv/bin/python benchmarks/drift.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_section  # noqa: E402
from cloud_sync.drift import DRIFT, DriftConfig, aggregate, drift_scores  # noqa: E402
from cloud_sync.drift import stats as drift_stats  # noqa: E402
from edge_agent.contracts.telemetry import ModelState  # noqa: E402
from edge_agent.metrics import ModelMetrics  # noqa: E402
from edge_agent.protocol import Telemetry  # noqa: E402

SIZES = (50, 200, 1000)
MESSAGES_PER_WINDOW = 4
TRAIN, CALIBRATION = 400, 800
FIXED_PSI = 0.25
SHIFTS = {  # name -> three strengths
    "brightness": (0.05, 0.1, 0.3),
    "rotation": (5.0, 15.0, 30.0),
    "noise": (0.02, 0.05, 0.15),
}
OURS, NAIVE = DriftConfig(), DriftConfig(sample_unit="value")


@dataclass
class Scenario:
    """A model, its reference statistics, and the no-drift population of 8x8 images."""

    name: str
    population: np.ndarray  # (n, 8, 8) in [0, 1]
    model: object
    layout: tuple[int, ...]  # the model input's shape after the batch axis
    reference: object
    exposure: bool


def exposure(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A per-image random gain and offset (a camera's exposure), clipped to [0, 1]."""
    gain = rng.uniform(0.7, 1.0, (len(images), 1, 1))
    offset = rng.uniform(0.0, 0.15, (len(images), 1, 1))
    return np.clip(images * gain + offset, 0.0, 1.0).astype(np.float32)


LAYOUTS = {  # name -> (model input shape after the batch axis, camera exposure jitter)
    "image": ((1, 8, 8), False),
    "image+exposure": ((1, 8, 8), True),
    "features": ((64,), False),
}


def scenario(name: str, seed: int = 0) -> Scenario:
    """One input layout of ``LAYOUTS`` on a seeded split of the digits."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from export.refstats import reference_stats

    layout, jitter = LAYOUTS[name]
    digits = load_digits()
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target
    if jitter:
        images = exposure(images, np.random.default_rng(seed + 2))
    order = np.random.default_rng(seed).permutation(len(images))
    train, population = images[order[:TRAIN]], images[order[TRAIN:]]
    cal = population[np.random.default_rng(seed + 1).choice(len(population), CALIBRATION,
                                                             replace=False)]
    model = LogisticRegression(max_iter=2000).fit(train.reshape(TRAIN, -1),
                                                  labels[order[:TRAIN]])
    reference = reference_stats(cal.reshape(CALIBRATION, *layout),
                                model.predict_proba(cal.reshape(CALIBRATION, -1)))
    return Scenario(name, population, model, layout, reference, jitter)


def shifted(images: np.ndarray, shift: str | None, strength: float,
            rng: np.random.Generator) -> np.ndarray:
    """Images after an input shift (clipped to [0, 1], as a sensor would)."""
    from scipy import ndimage

    if shift is None:
        return images
    if shift == "brightness":
        out = images + strength
    elif shift == "rotation":
        out = ndimage.rotate(images, strength, axes=(1, 2), reshape=False, order=1)
    else:
        out = images + rng.normal(0.0, strength, images.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def device_messages(sc: Scenario, size: int, shift: str | None, strength: float,
                    rng: np.random.Generator, device: str, start: float) -> list[Telemetry]:
    """One device window of ``size`` inferences, counted by ModelMetrics, as telemetry."""
    images = shifted(sc.population[rng.integers(0, len(sc.population), size)], shift, strength,
                     rng)
    outputs = sc.model.predict_proba(images.reshape(size, -1)).astype(np.float32)
    inputs = images.reshape(size, *sc.layout)
    metrics = ModelMetrics(sc.reference)
    messages = []
    for k, part in enumerate(np.array_split(np.arange(size), MESSAGES_PER_WINDOW)):
        metrics.record(1.0, inputs[part], outputs[part])
        w = metrics.close_window()
        messages.append(Telemetry(
            device_id=device, seq=k, ts=start + k + 1.0, model=ModelState("digits", "1"),
            window_s=1.0, inferences=w.inferences, errors=0, confidence=w.confidence,
            class_counts=w.class_counts, input_hist=w.input_hist))
    return messages


def judge(sc: Scenario, messages: list[Telemetry], start: float) -> dict[str, bool]:
    """Each rule's verdict (True: drift) on one device window."""
    window = aggregate(messages, messages[0].device_id, start, start + MESSAGES_PER_WINDOW + 1)
    ours = drift_scores(sc.reference, window, OURS)
    naive = drift_scores(sc.reference, window, NAIVE)
    ref = sc.reference.input
    ref_counts = np.column_stack([ref.below, ref.per_channel, ref.above])
    fixed = drift_stats.psi_rows(window.input_counts, ref_counts, 1e-4).max() > FIXED_PSI
    return {"ours": any(r.verdict == DRIFT for r in ours.values()),
            **{f"ours_{k}": r.verdict == DRIFT for k, r in ours.items()},
            "naive": any(r.verdict == DRIFT for r in naive.values()), "fixed": bool(fixed)}


def false_alarms(sc: Scenario, size: int, windows: int, rng: np.random.Generator) -> dict:
    """Drift verdicts per 1,000 no-drift device-windows, per rule."""
    hits: dict[str, int] = {}
    for i in range(windows):
        verdicts = judge(sc, device_messages(sc, size, None, 0.0, rng, f"d{i}", 0.0), 0.0)
        for rule, fired in verdicts.items():
            hits[rule] = hits.get(rule, 0) + int(fired)
    return {rule: 1000.0 * n / windows for rule, n in hits.items()} | {"windows": windows}


def windows_to_detect(sc: Scenario, size: int, shift: str, strength: float, devices: int,
                      cap: int, rng: np.random.Generator) -> dict:
    """Per rule: (median over devices of the first shifted window judged drift, share of
    shifted windows judged drift); per kind of ours: the share only."""
    first: dict[str, list[int]] = {"ours": [], "fixed": []}
    fired: dict[str, int] = {}
    seen = 0
    for d in range(devices):
        found: dict[str, int] = {}
        for w in range(1, cap + 1):
            verdicts = judge(sc, device_messages(sc, size, shift, strength, rng, f"s{d}", 0.0),
                             0.0)
            seen += 1
            for rule, hit in verdicts.items():
                fired[rule] = fired.get(rule, 0) + hit
                if hit and rule in first and rule not in found:
                    found[rule] = w
            if len(found) == len(first):
                break
        for rule in first:
            first[rule].append(found.get(rule, cap + 1))
    rates = {rule: n / seen for rule, n in fired.items()}
    return {rule: (float(np.median(first[rule])), rates[rule]) for rule in first} | {
        "kinds": [k[5:] for k in rates if k.startswith("ours_") and rates[k] >= 0.5]}


def fmt_detect(median: float, rate: float, cap: int, kinds: list[str] | None = None) -> str:
    if median > cap:
        return f">{cap}"
    which = f"; {'+'.join(k[:4] for k in kinds)}" if kinds else ""
    return f"{median:g} ({100 * rate:.0f} %{which})"


def reading(alarms: dict, stable: int) -> list[str]:
    """Totals over every no-drift window, and what the tables say."""
    total = stable * len(alarms)
    mean = {rule: sum(a[rule] for a in alarms.values()) / len(alarms)
            for rule in ("ours", "naive", "fixed")}
    return [
        f"Over all {total:,} no-drift device-windows: ours **{mean['ours']:.2f}** false alarms "
        f"per 1,000 (target <= 1), naive N {mean['naive']:.2f}, PSI > 0.25 "
        f"{mean['fixed']:.2f}.", "",
        "Reading: the fixed PSI cut-off fires on almost every small stable window when a "
        "channel has one value per inference (features: the no-drift PSI averages "
        "(1/n + 1/m)(B - 1), about 0.35 at n = 50 over 18 bins), and, watching inputs only, "
        "misses rotations that the model's outputs show at once (image). Counting every "
        "pixel as a sample (naive N) cries wolf where the pixels "
        "of one image share its exposure; n = min(values, inferences) is valid however "
        "correlated they are, at the price of power in small image windows (a worst-case "
        "bound: it treats each image as one draw). On `image`, brightness +0.05, noise "
        "0.02 and 0.05 stay inside the reference bins (the digits' 17 grey levels sit on "
        "the 1/16-wide bins) and are invisible to any histogram rule; the model's confidence "
        "catches rotation and strong noise before the inputs do."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer windows")
    args = parser.parse_args()
    stable, devices, cap = (300, 4, 5) if args.quick else (1500, 10, 10)
    began = time.perf_counter()
    rng = np.random.default_rng(7)
    found = [scenario(name) for name in LAYOUTS]
    alarms = {(sc.name, size): false_alarms(sc, size, stable, rng)
              for sc in found for size in SIZES}
    detect = {(sc.name, shift, s, size): windows_to_detect(sc, size, shift, s, devices, cap, rng)
              for sc in found for shift, strengths in SHIFTS.items() for s in strengths
              for size in SIZES}
    report(found, alarms, detect, stable, devices, cap, time.perf_counter() - began)


def report(found, alarms, detect, stable, devices, cap, seconds) -> None:
    ref = found[0].reference
    lines = [
        "## Drift detection: false alarms and windows to detect", "",
        f"Digits (scikit-learn), LogisticRegression on {TRAIN} digits; reference statistics "
        f"of an {CALIBRATION}-digit calibration sample (`reference.n` = {ref.n}) of the "
        f"{len(found[0].population)}-digit no-drift population; device windows counted by "
        "`ModelMetrics` and sent as 4 telemetry messages each. Ours: `DriftConfig()` "
        f"(alpha {OURS.alpha} per window over 3 kinds, {OURS.correction} over channels, "
        f"floors PSI {OURS.psi_floor} / JS {OURS.js_floor} / confidence drop "
        f"{OURS.confidence_floor}, n = min(values, inferences)). Naive N: the same with every "
        "counted value a sample. Fixed: PSI > 0.25 on any input channel. "
        f"Run time {seconds:.0f} s.", "",
        f"### False alarms per 1,000 no-drift device-windows ({stable} windows per row)", "",
        "| inputs | window | ours | (input / output / confidence) | naive N | PSI > 0.25 |",
        "|---|---|---|---|---|---|"]
    for (name, size), a in alarms.items():
        lines.append(f"| {name} | {size} | **{a['ours']:.1f}** | {a['ours_input']:.1f} / "
                     f"{a['ours_output']:.1f} / {a['ours_confidence']:.1f} | {a['naive']:.1f} | "
                     f"{a['fixed']:.1f} |")
    lines += ["", f"### Windows to detect a shift (median over {devices} devices, at most "
              f"{cap} windows each; in brackets the share of shifted windows judged drift, and for "
              "ours the kinds that fired in at least half of them: inpu(t), outp(ut), "
              "conf(idence))", ""]
    header = " | ".join(f"{s}: ours | {s}: PSI>0.25" for s in SIZES)
    for sc in found:
        lines += [f"**{sc.name}**", "", f"| shift | {header} |",
                  "|---|" + "---|" * (2 * len(SIZES))]
        for shift, strengths in SHIFTS.items():
            for s in strengths:
                cells = []
                for size in SIZES:
                    res = detect[(sc.name, shift, s, size)]
                    cells += [fmt_detect(*res["ours"], cap, res["kinds"]),
                              fmt_detect(*res["fixed"], cap)]
                lines.append(f"| {shift} {s:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += reading(alarms, stable)
    text = "\n".join(lines)
    print(text)
    write_section("drift", text)


if __name__ == "__main__":
    main()
