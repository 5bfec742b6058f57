"""One example of every MQTT message and of a bundle manifest, built from the real classes.

``python -m edge_agent.contracts.examples [PATH]`` writes docs/protocol.md (or
PATH); ``--check`` only compares and exits 1 when the file is stale. A test
renders it again and compares with the committed file, so the documented JSON
cannot drift from the code: every example is built from the dataclasses and
passes the same strict read as a real message.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path
from typing import Any

from edge_agent import protocol as p
from edge_agent.bundle.manifest import (
    FileEntry,
    Golden,
    Manifest,
    ModelInfo,
    TargetInfo,
    TensorSpec,
)
from edge_agent.contracts.build_info import Compression, Lineage, Metrics, Parity, Preprocessing
from edge_agent.contracts.reference import (
    DetectionReference,
    InputReference,
    OutputReference,
    ReferenceStats,
)
from edge_agent.contracts.task import LAYOUTS, DetectionSpec, Task
from edge_agent.contracts.telemetry import (
    ConfidenceHist,
    DetectionWindow,
    EncodedInput,
    InputHist,
    LatencyMs,
    ModelRef,
    ModelState,
    OutboxFigures,
    Prediction,
    SampleDetection,
    SystemFigures,
    ValueWindow,
)

TS = 1767225600.25
EDGES10 = [round(i / 10, 1) for i in range(11)]
MODEL = ModelRef(name="digits", version="3")
BINS = [0.0, 0.25, 0.5, 0.75, 1.0]
INCARNATION = "9c41d2e07b5a3f18"  # the device's outbox id (edge_agent.outbox)


def _telemetry() -> p.Telemetry:
    return p.Telemetry(
        device_id="pi-017", seq=4182, ts=TS,
        model=ModelState(name="digits", version="3", non_finite=0, probation=False),
        window_s=60.0, inferences=1200, errors=2,
        latency_ms=LatencyMs(p50=1.84, p95=2.91, p99=4.02),
        confidence=ConfidenceHist(edges=EDGES10, counts=[0, 0, 1, 3, 6, 10, 18, 42, 120, 1000],
                                  mean=0.9312),
        class_counts={"0": 130, "1": 118, "7": 952},
        input_hist=InputHist(bin_edges=BINS, channel_axis=1, below=[12], above=[3],
                             per_channel=[[40210, 8811, 9030, 18734]]),
        outbox=OutboxFigures(queued=0, queued_bytes=0, dropped=0, dropped_bytes=0),
        system=SystemFigures(cpu_percent=23.5, rss_mb=61.2, temp_c=48.3, disk_free_mb=11873.4),
        incarnation=INCARNATION)


def _sample() -> p.Sample:
    raw = struct.pack("<4f", 0.0, 0.5, 1.0, 0.25)
    return p.Sample(device_id="pi-017", seq=311, ts=TS, model=MODEL, reason="low_confidence",
                    prediction=Prediction(class_index=7, confidence=0.41),
                    input=EncodedInput(dtype="float32", shape=[1, 1, 2, 2],
                                       data=base64.b64encode(raw).decode("ascii")),
                    incarnation=INCARNATION)


def _detector_telemetry() -> p.Telemetry:
    """A detector's window: no confidence or class_counts, the ``detection`` block instead."""
    from edge_agent.tasks import stats

    return p.Telemetry(
        device_id="pi-017", seq=4183, ts=TS,
        model=ModelState(name="digit-boxes", version="2", non_finite=0, probation=False),
        window_s=60.0, inferences=600, errors=0,
        latency_ms=LatencyMs(p50=6.12, p95=7.4, p99=9.95),
        detection=DetectionWindow(
            frames=600, empty_frames=31, count_edges=[float(e) for e in stats.COUNT_EDGES],
            count_hist=[31, 170, 201, 148, 42, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            score_edges=list(stats.SCORE_EDGES),
            score_hist=[0, 0, 0, 0, 0, 14, 18, 22, 25, 31, 40, 52, 61, 80, 97, 120, 151, 188,
                        240, 109],
            class_counts=[402, 431, 415], area_edges=list(stats.AREA_EDGES),
            area_hist=[0, 0, 0, 0, 0, 96, 505, 640, 7, 0, 0], mean_score=0.7842),
        outbox=OutboxFigures(), system=SystemFigures(cpu_percent=41.0, rss_mb=88.5),
        incarnation=INCARNATION)


def _generic_telemetry() -> p.Telemetry:
    """A generic model's window: one ``values`` histogram per output with a reference."""
    return p.Telemetry(
        device_id="pi-018", seq=977, ts=TS,
        model=ModelState(name="wear", version="5"), window_s=60.0, inferences=240, errors=0,
        latency_ms=LatencyMs(p50=0.41, p95=0.52, p99=0.7),
        values=[ValueWindow(name="wear_mm", edges=[0.0, 0.5, 1.0, 1.5, 2.0],
                            counts=[0, 61, 102, 58, 19, 0], mean=0.92)],
        incarnation=INCARNATION)


def _detector_sample() -> p.Sample:
    """A detector's sample: its ``detections`` (input pixels) instead of a ``prediction``."""
    raw = struct.pack("<4f", 0.0, 0.5, 1.0, 0.25)
    return p.Sample(device_id="pi-017", seq=312, ts=TS,
                    model=ModelRef(name="digit-boxes", version="2"), reason="low_confidence",
                    detections=[SampleDetection(box=[0.1, 0.0, 1.6, 1.9], score=0.91,
                                                class_index=7),
                                SampleDetection(box=[0.9, 0.2, 2.0, 1.8], score=0.31,
                                                class_index=1)],
                    input=EncodedInput(dtype="float32", shape=[1, 1, 2, 2],
                                       data=base64.b64encode(raw).decode("ascii")),
                    incarnation=INCARNATION)


def _commands() -> dict[str, p.Command]:
    update = {"url": "https://cloud.example/artifacts/digits-4.ekb", "sha256": "3f" * 32,
              "version": "4", "size": 48213}
    return {
        "cmd (update)": p.Command(cmd_id="c-7f3a", type="update", ts=TS, args=update,
                                  expires_at=TS + 3600),
        "cmd (rollback)": p.Command(cmd_id="c-7f3b", type="rollback", ts=TS,
                                    args={"from_version": "4"}),
        "cmd (set-config)": p.Command(cmd_id="c-7f3c", type="set-config", ts=TS,
                                      args={"telemetry_interval_s": 30.0,
                                            "low_confidence": 0.5}),
        "cmd (ping)": p.Command(cmd_id="c-7f3d", type="ping", ts=TS, expires_at=TS + 60),
    }


def example_messages() -> dict[str, p.Message]:
    """One message of every kind (and every command type), by title."""
    status = p.Status(device_id="pi-017", seq=52, ts=TS, state="online", model=MODEL,
                      agent_version="0.1.0", detail={"probation": False}, reason="",
                      profile="rpi4", incarnation=INCARNATION)
    result = p.CommandResult(device_id="pi-017", seq=97, ts=TS, cmd_id="c-7f3a", type="update",
                             ok=True, detail={"phase": "probation", "final": False,
                                              "version": "4"}, incarnation=INCARNATION)
    return {"telemetry": _telemetry(), "telemetry (detector)": _detector_telemetry(),
            "telemetry (generic)": _generic_telemetry(), "samples": _sample(),
            "samples (detector)": _detector_sample(), "status": status, **_commands(),
            "cmd/result": result}


def example_reference_stats() -> ReferenceStats:
    """Reference statistics of a one-channel model with 4 input bins and 3 classes."""
    return ReferenceStats(
        n=256,
        input=InputReference(bin_edges=BINS, channel_axis=1, below=[0], above=[0],
                             per_channel=[[9810, 2012, 1987, 2575]], range=[0.0, 1.0],
                             mean=[0.3071], std=[0.3817]),
        output=OutputReference(class_distribution=[0.332031, 0.335938, 0.332031],
                               confidence_edges=EDGES10,
                               confidence_hist=[0, 0, 0, 1, 2, 4, 9, 15, 40, 185],
                               probabilities=False, confidence_mean=0.9104))


def example_detection_task() -> Task:
    """The ``task`` block of a digit detector in the ``yolov8`` layout."""
    return Task(kind="detection", detection=DetectionSpec(
        layout="yolov8", num_classes=3, input_size=[96, 96], labels=["0", "1", "2"],
        score_threshold=0.25, iou_threshold=0.45, max_detections=20, normalized_boxes=True))


def example_detection_reference() -> DetectionReference:
    """A detector's output reference statistics (``edge_agent.tasks.stats`` edges)."""
    from edge_agent.tasks import stats

    return DetectionReference(
        count_edges=list(stats.COUNT_EDGES), count_hist=[0, 61, 70, 66, 59, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0],
        score_edges=list(stats.SCORE_EDGES),
        score_hist=[0, 0, 0, 0, 0, 3, 4, 6, 5, 8, 9, 11, 14, 18, 25, 34, 51, 80, 141, 230],
        class_distribution=[0.331, 0.338, 0.331], area_edges=list(stats.AREA_EDGES),
        area_hist=[0, 0, 0, 0, 0, 41, 230, 358, 9, 0, 0], mean_count=2.49)


def example_manifest() -> Manifest:
    """A complete manifest as ``edgekit build`` writes it."""
    sha = "9c" * 32
    return Manifest(
        model=ModelInfo(name="digits", version="3"), profile="rpi4",
        target=TargetInfo(format="tflite", precision="int8",
                          runtime={"delegate": "xnnpack", "threads": 4}),
        files={"model": FileEntry(path="model.tflite", sha256=sha, size=48213),
               "golden_input": FileEntry(path="golden_input.npz", sha256="1a" * 32, size=512),
               "golden_output": FileEntry(path="golden_output.npz", sha256="2b" * 32,
                                          size=310)},
        inputs=[TensorSpec(name="x", shape=[1, 1, 2, 2], dtype="float32", layout="NCHW")],
        outputs=[TensorSpec(name="logits", shape=[1, 3], dtype="float32", layout="NC")],
        created_at="2026-01-01T00:00:00+00:00", created_by="edgekit 0.1.0 build",
        preprocessing=Preprocessing(source="2x2 grayscale, values 0..16",
                                    steps=[{"op": "scale", "factor": 0.0625}],
                                    layout="NCHW", dtype="float32"),
        labels=["0", "1", "2"],
        metrics=Metrics(size_bytes=48213, metric_name="top1_accuracy", metric=0.9611,
                        baseline_metric=0.9667, allowed_drop=0.0483, format="tflite",
                        precision="int8", method="litert-pt2e", prune_ratio=0.5,
                        latency_ms=0.21, latency_ms_1thread=0.35, threads=4,
                        parity=Parity(max_abs_diff=0.41, top1_agreement=0.983,
                                      export=Parity(max_abs_diff=0.38, top1_agreement=0.986)),
                        baseline_latency_ms=1.3, baseline_latency_ms_1thread=2.1,
                        baseline_size_bytes=301244, speedup=6.19,
                        latency_host="x86_64 x8 (this build host)"),
        lineage=Lineage(source_model="examples/digits/model.py:make_model",
                        source_weights="weights.pt", source_weights_sha256="5d" * 32,
                        data="examples/digits/data.py:data", recipe={"version": 1},
                        calibration_sha256="6e" * 32, tools={"edgekit": "0.1.0"},
                        parent_version="2",
                        compression=Compression(prune_ratio=0.5,
                                                steps={"prune": {"macs_ratio": 0.51}})),
        reference_stats=example_reference_stats(), golden=Golden(atol=0.05, rtol=0.05))


HEADER = """# edgekit contracts by example

Generated by `python -m edge_agent.contracts.examples` from the dataclasses in
`edge_agent` (`edge_agent/protocol.py`, `edge_agent/contracts/`,
`edge_agent/bundle/manifest.py`); `tests/test_docs_protocol.py` fails when this
file is stale. Do not edit it by hand.

## Versions

Every message carries `"v": "MAJOR.MINOR"` (now `"{protocol}"`) and every manifest
`"schema_version": "MAJOR.MINOR"` (now `"{schema}"`); the integer `1` of the first
release reads as `"1.0"`. A minor release only adds optional fields. Readers refuse
an unknown major with a one-line error and read a newer minor leniently: unknown
fields, at any depth, are skipped, listed on the parsed object
(`message.unknown_fields`, `manifest.unknown_fields`: dotted paths) and counted in
`edge_agent.contracts.unknown_field_counts()` (`"<kind>:<path>"` -> count). A
document of the reader's own or an older minor is read strictly, and writers are
strict: an unknown field there is an error naming it.

Device messages: `seq` counts per device and kind in the device's outbox file, and
`incarnation` (protocol 1.2) is that file's random id, new when the file is (a lost
outbox, a re-imaged device: every `seq` starts at 1 again). The cloud deduplicates
on (device, incarnation, kind, seq), counts gaps per incarnation and takes the
device's state from its newest incarnation; a message without `incarnation` (1.0,
1.1) belongs to the empty incarnation `""`.

Tasks (protocol 1.3): a classifier's telemetry carries `confidence` and `class_counts`;
a detector's carries `detection` instead (frames, empty frames, detections per frame,
scores, classes, relative box areas, counted at the manifest's thresholds on the edges of
its `reference_stats.detection`; frames, not boxes, are the sample size), and a generic
model's `values` (one histogram per output on its reference edges). A classifier's sample
carries `prediction`; a detector's carries `detections` (boxes in the pixels of its
`input`); a generic model's neither. Older messages read as before.

Topics: `edgekit/<fleet>/<device>/<kind>`, QoS {qos}; `status` is retained.
"""


def _pretty(value: Any, depth: int = 0) -> str:
    """Indented JSON that keeps short lists of plain values (edges, counts) on one line."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_pretty(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_pretty(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)


def _block(title: str, note: str, doc: dict[str, Any]) -> str:
    return f"### {title}\n\n{note}\n\n```json\n{_pretty(doc)}\n```\n"


def render() -> str:
    """The whole of docs/protocol.md."""
    parts = [HEADER.format(protocol=p.PROTOCOL_VERSION, schema=_schema(), qos=p.QOS),
             "## MQTT messages\n"]
    for title, message in example_messages().items():
        message.to_json()  # the same strict check a real writer makes
        note = f"`{type(message).__module__}.{type(message).__name__}` on topic kind " \
               f"`{message.KIND}`."
        parts.append(_block(title, note, message.to_dict()))
    manifest = example_manifest()
    manifest = Manifest.from_dict(manifest.to_dict())  # strict, as the bundle writer checks
    parts.append("## Bundle manifest\n")
    parts.append(_block("reference_stats", "`edge_agent.contracts.ReferenceStats` (the "
                        "manifest's `reference_stats`).", manifest.reference_stats.to_dict()))
    parts.append(_block("manifest.json", "`edge_agent.bundle.Manifest`, as signed "
                        "(files are hashed by the bundle writer).", manifest.to_dict()))
    parts.append(_block("task (detection)", "`edge_agent.contracts.task.Task` (the manifest's "
                        "`task`, schema 1.2; absent or `classification` for classifiers). "
                        "Layouts: " + "; ".join(f"`{n}`" for n in LAYOUTS) + ".",
                        example_detection_task().to_dict()))
    parts.append(_block("reference_stats.detection", "`edge_agent.contracts.reference."
                        "DetectionReference`: a detector's outputs on the calibration set "
                        "(generic models carry `values`, one histogram per output).",
                        example_detection_reference().to_dict()))
    return "\n".join(parts)


def _schema() -> str:
    from edge_agent.bundle.manifest import SCHEMA_VERSION

    return str(SCHEMA_VERSION)


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) docs/protocol.md."""
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = Path(paths[0] if paths else "docs/protocol.md")
    text = render()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale; run python -m edge_agent.contracts.examples")
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
