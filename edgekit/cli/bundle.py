"""``edgekit bundle``: pack, verify and inspect signed ``.ekb`` bundles."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_agent.bundle import open_bundle, read_manifest_unverified, trusted_keys
from edgekit.cli.options import JsonFlag, ProfilesDir, dirs
from edgekit.cli.output import console, people_table, print_json, runtime_text

app = typer.Typer(help="Signed model bundles (.ekb): pack, verify, inspect.",
                  no_args_is_help=True)


@app.command("pack")
def pack(
    model_file: Path = typer.Argument(..., help="An existing .onnx or .tflite file."),
    profile: str = typer.Option(..., "--profile", help="Hardware profile the bundle is for."),
    name: str = typer.Option(..., "--name", help="Model name."),
    version: str = typer.Option(..., "--version", help="Model version: 7 or 1.4.2."),
    key: Path = typer.Option(..., "--key", help="Private key (from 'edgekit keys generate')."),
    out: Path = typer.Option(..., "-o", "--out", help="Bundle file to write (.ekb)."),
    precision: str = typer.Option(
        None, "--precision", help="fp32|fp16|int8|int8-dynamic; default: read from the model."),
    labels: Path = typer.Option(None, "--labels", help="Text file, one class label per line."),
    reference_data: Path = typer.Option(
        None, "--reference-data", help="A .npy of representative inputs [N, ...]: run through "
        "the model to record reference statistics, so the cloud can detect drift."),
    task: str = typer.Option("classification", "--task",
                             help="classification|detection|generic: what the model computes."),
    layout: str = typer.Option(None, "--layout", help="Detection output layout: yolov8 "
                               "[1,4+C,N], yolov5 [1,N,5+C] or boxes_scores ([1,N,4] + [1,N,C])."),
    num_classes: int = typer.Option(None, "--num-classes", min=1,
                                    help="Detection classes; default: from the output shape."),
    input_size: str = typer.Option(None, "--input-size", help="Detection input HEIGHTxWIDTH in "
                                   "pixels; default: from the input shape."),
    score_threshold: float = typer.Option(0.25, "--score-threshold", min=0.0, max=1.0,
                                          help="Detections below this score are dropped."),
    iou_threshold: float = typer.Option(0.45, "--iou-threshold", min=0.0, max=1.0,
                                        help="Non-maximum suppression IoU."),
    max_detections: int = typer.Option(100, "--max-detections", min=1,
                                       help="Detections kept per image."),
    normalized_boxes: bool = typer.Option(False, "--normalized-boxes", help="Box coordinates "
                                          "are fractions of the input size, not pixels."),
    profiles_dir: list[Path] = ProfilesDir,
) -> None:
    """Pack a model you already have into a signed bundle for a profile."""
    from export.pack import PackRequest, TaskOptions, pack_model
    from hardware_profiles import get_profile

    label_list = _labels(labels) if labels else []
    options = TaskOptions(kind=task, layout=layout, num_classes=num_classes,
                          input_size=_size(input_size) if input_size else None,
                          score_threshold=score_threshold, iou_threshold=iou_threshold,
                          max_detections=max_detections, normalized_boxes=normalized_boxes)
    request = PackRequest(model_file=model_file, profile=get_profile(profile, dirs(profiles_dir)),
                          name=name, version=version, key_file=key, out=out,
                          precision=precision, labels=label_list,
                          reference_data=_load_npy(reference_data) if reference_data else None,
                          task=options)
    manifest = pack_model(request)
    console.print(f"wrote {out}: {manifest.model.name} v{manifest.model.version} for "
                  f"{manifest.profile} ({manifest.target.format}/{manifest.target.precision})")


def _labels(path: Path) -> list[str]:
    """One label per line (a label may hold spaces: "traffic light"); blank lines skipped."""
    from edge_agent.errors import BundleError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"--labels {path}: not a readable UTF-8 text file ({exc})") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _size(text: str) -> list[int]:
    """``96x96`` (HEIGHTxWIDTH) as [96, 96], or one clear line."""
    from edge_agent.errors import BundleError

    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise BundleError(f"--input-size {text!r}: give HEIGHTxWIDTH in pixels, e.g. 640x640")
    return [int(p) for p in parts]


def _load_npy(path: Path):
    """A .npy array (never a pickle), or one clear line."""
    import numpy as np

    from edge_agent.errors import BundleError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"--reference-data {path}: not a readable .npy array ({exc})") from exc


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="Bundle file (.ekb)."),
    pubkey: list[Path] = typer.Option(..., "--pubkey", help="Trusted public key (repeatable)."),
    run: bool = typer.Option(False, "--run", help="Also load the model here and check its "
                             "golden input/output."),
    profiles_dir: list[Path] = ProfilesDir,
) -> None:
    """Check signature, hashes and profile; exit 0 only for a good bundle."""
    from hardware_profiles import load_profiles

    known = load_profiles(dirs(profiles_dir))
    with open_bundle(bundle, trusted_keys(pubkey), known_profiles=set(known)) as opened:
        m = opened.manifest
        line = (f"ok: {bundle} is {m.model.name} v{m.model.version} for {m.profile}, "
                f"signed by key {opened.key_id}")
        if run:
            from edge_agent.model import LoadedModel

            result = LoadedModel.load(opened).golden
            line += f"; golden check passed (max abs diff {result.max_abs_diff:.3g})"
    console.print(line, highlight=False)


@app.command("inspect")
def inspect(bundle: Path = typer.Argument(..., help="Bundle file (.ekb)."),
            as_json: bool = JsonFlag) -> None:
    """Show a bundle's manifest (not verified: use 'verify' for that)."""
    manifest = read_manifest_unverified(bundle)
    if as_json:
        print_json(manifest.to_dict())
        return
    m = manifest
    console.print(f"[bold]{m.model.name}[/] v{m.model.version} for profile {m.profile}: "
                  f"{m.target.format}/{m.target.precision} ({runtime_text(m.target.runtime)})",
                  highlight=False)
    table = people_table("io", "name", "shape", "dtype", "quantization", title="tensors")
    for io, specs in (("in", m.inputs), ("out", m.outputs)):
        for s in specs:
            q = f"scale={s.quantization.scale:.4g} zp={s.quantization.zero_point}" \
                if s.quantization else "-"
            table.add_row(io, s.name, str(s.shape), s.dtype, q)
    console.print(table)
    for role, entry in m.files.items():
        console.print(f"file {role}: {entry.path} {entry.size} bytes sha256 {entry.sha256[:16]}…")
    if m.task.kind != "classification":
        for name, value in _flat(m.task.to_dict()):
            console.print(f"task.{name}: {value}", highlight=False)
    for key in ("metrics", "lineage"):
        for name, value in _flat(getattr(m, key).to_dict()):
            console.print(f"{key}.{name}: {value}", highlight=False)


def _flat(doc: dict, prefix: str = ""):
    """(dotted name, value) of every set leaf of a nested JSON object, for people to read."""
    for key, value in doc.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        elif value not in (None, [], ""):
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            yield f"{prefix}{key}", shown
