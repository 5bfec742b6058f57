"""Pack an existing .onnx or .tflite file into a signed bundle ("bring your own model")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Union

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import __version__ as agent_version
from edge_agent.bundle import Golden, Manifest, ModelInfo, TargetInfo, load_private_key
from edge_agent.bundle.archive import file_digest
from edge_agent.bundle.manifest import TensorSpec
from edge_agent.contracts.build_info import Lineage, Metrics
from edge_agent.contracts.reference import ReferenceStats
from edge_agent.contracts.task import Task
from edge_agent.errors import BundleError
from edge_agent.golden import tolerance_for
from edge_agent.model import dequantize, quantize
from edge_agent.runtimes import Session, load_session
from export.bundling import write_model_bundle
from export.introspect import format_of, precision_of
from export.refstats import reference_stats
from hardware_profiles import OnnxTarget, Profile, TfliteTarget

Target = Union[OnnxTarget, TfliteTarget]  # a run-time alias: Python 3.9 has no `A | B` here


@dataclass
class PackRequest:
    """What ``edgekit bundle pack`` was asked to do."""

    model_file: Path
    profile: Profile
    name: str
    version: str
    key_file: Path
    out: Path
    precision: str | None = None
    labels: list[str] = field(default_factory=list)
    reference_data: np.ndarray | None = None
    """Representative inputs (float, the model's input shape with a leading sample axis):
    run through the model to fill ``reference_stats``, so the cloud can watch drift."""
    task: TaskOptions = field(default_factory=lambda: TaskOptions())


@dataclass
class TaskOptions:
    """``bundle pack``'s task options: what the model computes and, for a detector, how to
    decode it (unset detection figures come from the model: classes from the output shape,
    input size from the input shape)."""

    kind: str = "classification"
    layout: str | None = None
    num_classes: int | None = None
    input_size: list[int] | None = None
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    normalized_boxes: bool = False
    output_names: list[str] = field(default_factory=list)


def input_size_of(spec: TensorSpec) -> list[int]:
    """[height, width] of an image input: NCHW (1 or 3 channels first) or NHWC."""
    shape = list(spec.shape)
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
        if shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
            return [shape[2], shape[3]]
        if shape[3] in (1, 3, 4):
            return [shape[1], shape[2]]
        return [shape[2], shape[3]]
    raise BundleError(f"cannot read an image size from input {spec.name} {shape}; pass "
                      "--input-size HEIGHTxWIDTH")


def make_task(options: TaskOptions, labels: list[str], session: Session) -> Task:
    """The manifest's ``task`` from the options and the model's own shapes (one-line errors)."""
    from edge_agent.tasks.layouts import check_output_shapes, classes_in

    if options.kind != "detection":
        Task.from_dict({"kind": options.kind}, "task")  # an unknown kind is named first
        if options.layout is not None:
            raise BundleError(f"--layout is for --task detection, not --task {options.kind}")
        return Task(kind=options.kind, output_names=list(options.output_names))
    if options.layout is None:
        raise BundleError("--task detection needs --layout (yolov8, yolov5 or boxes_scores): "
                          "how the model's outputs hold boxes and scores")
    shapes = [list(o.shape) for o in session.outputs]
    classes = options.num_classes or classes_in(options.layout, shapes)
    if labels and len(labels) != classes:
        raise BundleError(f"--labels names {len(labels)} classes but the model's outputs hold "
                          f"{classes} ({options.layout} layout); give one label per class")
    detection = {"layout": options.layout, "num_classes": classes,
                 "input_size": options.input_size or input_size_of(session.inputs[0]),
                 "labels": list(labels), "score_threshold": options.score_threshold,
                 "iou_threshold": options.iou_threshold,
                 "max_detections": options.max_detections,
                 "normalized_boxes": options.normalized_boxes}
    task = Task.from_dict({"kind": "detection", "detection": detection}, "task")
    check_output_shapes(task.detection, shapes)
    return task


def pick_target(profile: Profile, fmt: str, precision: str) -> Target:
    """The profile's first target of this format and precision, or an error saying what fits."""
    of_format = profile.targets_for(fmt)
    if not of_format:
        raise BundleError(f"profile '{profile.name}' cannot run {fmt} models; it runs: "
                          f"{', '.join(profile.formats())}")
    for target in of_format:
        if target.precision == precision:
            return target
    listed = ", ".join(t.precision for t in of_format)
    raise BundleError(f"profile '{profile.name}' runs {fmt} at {listed}, not {precision}; "
                      "pass --precision or pick another profile")


def golden_inputs(specs: list[TensorSpec], seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs of the model's shapes (dynamic dims as 1) and dtypes."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            arrays.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape,
                                       dtype=dtype))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return arrays


def _reference(session: Session, data: np.ndarray | None, task: Task) -> ReferenceStats:
    """Reference statistics of ``data`` run through the model, one sample at a time."""
    if data is None:
        return ReferenceStats()
    spec = session.inputs[0]
    x = np.asarray(data)
    if x.dtype.kind != "f" or not np.isfinite(x).all():
        raise BundleError("reference data must be finite floats (the model's float input, "
                          "before any quantization)")
    item = tuple(spec.shape[1:])
    if x.ndim != len(spec.shape) or any(d is not None and d != n  # same length: ndim checked
                                        for d, n in zip(item, x.shape[1:])):
        raise BundleError(f"reference data has shape {list(x.shape)}; the model takes "
                          f"{spec.shape} (give N samples: [N, {', '.join(map(str, item))}])")
    if len(session.inputs) != 1 or len(x) < 2:
        raise BundleError("reference data needs a single-input model and at least 2 samples")
    runs = [[dequantize(raw, out) for raw, out in
             zip(session.run([quantize(x[i:i + 1].astype(np.float32), spec)]), session.outputs)]
            for i in range(len(x))]
    outputs = [np.concatenate(column) for column in zip(*runs)]
    return reference_stats(x.astype(np.float32),
                           outputs[0] if len(outputs) == 1 else tuple(outputs), task)


def _check_size(profile: Profile, path: Path) -> None:
    size_mb = path.stat().st_size / 1e6
    if size_mb > profile.limits.max_model_mb:
        raise BundleError(f"model is {size_mb:.1f} MB; profile '{profile.name}' allows "
                          f"{profile.limits.max_model_mb} MB (limits.max_model_mb)")


def pack_model(req: PackRequest) -> Manifest:
    """Inspect, check against the profile, record a golden pair, sign and write the bundle."""
    if not req.model_file.is_file():
        raise BundleError(f"model file {req.model_file} does not exist")
    fmt = format_of(req.model_file)
    _check_size(req.profile, req.model_file)
    key = load_private_key(req.key_file)
    first = req.profile.targets_for(fmt)
    if not first:
        pick_target(req.profile, fmt, "fp32")  # raises the "cannot run" error
    session = load_session(fmt, req.model_file, first[0].runtime_options())
    task = make_task(req.task, req.labels, session)
    if task.kind == "classification" and len(session.outputs) != 1:
        raise BundleError(f"the model has {len(session.outputs)} outputs; a classifier has one. "
                          "Pass --task detection --layout ... or --task generic")
    precision = req.precision or precision_of(fmt, req.model_file, session)
    target = pick_target(req.profile, fmt, precision)
    return _write(req, fmt, target, session, key, task)


def _write(req: PackRequest, fmt: str, target: Target, session: Session,
           key: Ed25519PrivateKey, task: Task) -> Manifest:
    feeds = golden_inputs(session.inputs)
    outputs = session.run(feeds)
    atol, rtol = tolerance_for(target.precision, outputs)
    sha, size = file_digest(req.model_file)
    manifest = Manifest(
        model=ModelInfo(name=req.name, version=str(req.version)),
        profile=req.profile.name,
        target=TargetInfo(format=fmt, precision=target.precision,
                          runtime=target.runtime_options()),
        files={}, inputs=session.inputs, outputs=session.outputs,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        created_by=f"edgekit {agent_version} bundle pack",
        labels=list(req.labels),
        metrics=Metrics(size_bytes=size),
        lineage=Lineage(source_model_sha256=sha, recipe="bring-your-own-model"),
        golden=Golden(atol=atol, rtol=rtol),
        reference_stats=_reference(session, req.reference_data, task), task=task,
    )
    return write_model_bundle(manifest, req.model_file, feeds, outputs, key, req.out)
