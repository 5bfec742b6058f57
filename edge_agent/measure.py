"""Timing a candidate model on this device, in a runtime instance of its own.

The build sends a candidate file to ``POST /v1/measure``; the agent loads it in a *separate*
session (never the model it serves) from a temporary folder that is removed afterwards, runs
a warm-up and then ``rounds`` rounds of ``runs // rounds`` batch-1 runs, and answers the
median of each round. The figure to use is ``median_ms``, the best round's median, as on the
build host (``export/latency.py``): a burst of load from the served traffic spoils a round,
not the figure.

Request body (``Content-Type: application/x-edgekit-measure``): an ``.npz`` archive
(``numpy.savez``, stored or deflated; read with ``allow_pickle=False``) holding

- ``model``   uint8[N]: the model file's bytes
- ``sample``  one float input, ``[1, ...]`` (only the first example is used)
- ``request`` a 0-d unicode array holding JSON::

      {"v": 1, "format": "onnx" | "tflite",
       "options": {"threads": 4, "providers": [...], "delegate": "xnnpack"},
       "runs": 100, "warmup": 10, "rounds": 3}

``encode_request`` writes such a body. The answer is JSON (``MeasureResult.to_dict``):
``median_ms``, ``round_medians_ms``, ``p95_ms``, ``min_ms``, ``runs``, ``warmup``,
``rounds``, ``threads``, ``runtime``, ``runtime_version``, ``providers`` (ONNX Runtime's
actual providers, or the TFLite delegate), ``load_ms`` and ``device`` (id, profile, arch,
cpus).
``GET /v1/measure`` tells a client whether measuring is enabled, its limits and the device.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_agent.errors import EdgekitError, ModelLoadError, first_line
from edge_agent.model import quantize
from edge_agent.runtimes import load_session, registered_formats

CONTENT_TYPE = "application/x-edgekit-measure"
REQUEST_VERSION = 1
_MEMBERS = ("model.npy", "sample.npy", "request.npy")


class MeasureError(EdgekitError):
    """A measure request is malformed or cannot be run (answered 400)."""


class MeasureBusy(EdgekitError):
    """Another measurement is running (answered 429)."""


@dataclass(frozen=True)
class MeasureLimits:
    """What one measure request may ask of the device."""

    max_bytes: int = 64 << 20
    max_runs: int = 10_000
    max_warmup: int = 1_000
    max_rounds: int = 20


@dataclass
class MeasureRequest:
    """One model file to time, with its runtime options and one input sample."""

    format: str
    options: dict[str, Any]
    model: bytes | memoryview  # a view of the request's array: a large file is not copied again
    sample: np.ndarray
    runs: int = 100
    warmup: int = 10
    rounds: int = 3


@dataclass
class MeasureResult:
    """The figures of one measurement, as returned to the client."""

    median_ms: float
    round_medians_ms: list[float]
    p95_ms: float
    min_ms: float
    runs: int
    warmup: int
    rounds: int
    threads: int
    runtime: str
    runtime_version: str
    providers: list[str]
    load_ms: float
    device: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _int_option(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 256:
        raise MeasureError(f"option '{name}' must be an integer 0..256, got {value!r}")
    return value


def _providers_option(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MeasureError(f"option '{name}' must be a non-empty list of provider names")
    return value


def _delegate_option(value: Any, name: str) -> str:
    if value not in ("xnnpack", "gpu", "none"):
        raise MeasureError(f"option '{name}' must be xnnpack, gpu or none, got {value!r}")
    return value


# runtime option -> its check; "opset" is a build-side setting the runtimes ignore
_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "threads": _int_option, "providers": _providers_option, "delegate": _delegate_option,
    "opset": _int_option,
}


def check_options(options: Any) -> dict[str, Any]:
    """The runtime options, each checked; MeasureError names a bad or unknown one."""
    if not isinstance(options, dict):
        raise MeasureError('"options" must be an object such as {"threads": 4}')
    for name, value in options.items():
        if name not in _OPTIONS:
            raise MeasureError(f"unknown runtime option '{name}'; known: "
                               f"{', '.join(sorted(_OPTIONS))}")
        _OPTIONS[name](value, name)
    return dict(options)


def encode_request(req: MeasureRequest) -> bytes:
    """The request body for ``POST /v1/measure`` (see the module docstring)."""
    doc = {"v": REQUEST_VERSION, "format": req.format, "options": req.options,
           "runs": req.runs, "warmup": req.warmup, "rounds": req.rounds}
    buf = io.BytesIO()
    np.savez(buf, model=np.frombuffer(req.model, dtype=np.uint8),
             sample=np.asarray(req.sample, dtype=np.float32), request=np.array(json.dumps(doc)))
    return buf.getvalue()


def _read_members(body: bytes, limits: MeasureLimits) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            infos = archive.infolist()
            names = sorted(i.filename for i in infos)
            if names != sorted(_MEMBERS):
                raise MeasureError(f"body must be an .npz with model, sample and request; "
                                   f"got {', '.join(names) or 'nothing'}")
            unpacked = sum(i.file_size for i in infos)
            if unpacked > limits.max_bytes:
                raise MeasureError(f"request unpacks to {unpacked} bytes, over the "
                                   f"{limits.max_bytes} limit; send a smaller model")
            return {n[:-4]: np.load(io.BytesIO(archive.read(n)), allow_pickle=False)
                    for n in names}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise MeasureError(f"body is not a valid .npz measure request: {exc}; "
                           "write it with edge_agent.measure.encode_request") from exc


def _count(doc: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MeasureError(f"'{name}' must be an integer {low}..{high}, got {value!r}")
    return value


def _request_doc(array: np.ndarray) -> dict[str, Any]:
    if array.ndim != 0 or array.dtype.kind != "U":
        raise MeasureError("'request' must be a JSON string (a 0-d unicode array)")
    try:
        doc = json.loads(str(array))
    except ValueError as exc:
        raise MeasureError(f"'request' is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != REQUEST_VERSION:
        raise MeasureError(f"'request' must be a JSON object with \"v\": {REQUEST_VERSION}")
    return doc


def _sample(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "fiu" or array.ndim < 1 or array.shape[0] < 1:
        raise MeasureError("'sample' must be a numeric array [1, ...] (one model input)")
    if not np.isfinite(array).all():
        raise MeasureError("'sample' contains NaN or inf")
    return np.asarray(array[:1], dtype=np.float32)


def parse_request(body: bytes, limits: MeasureLimits) -> MeasureRequest:
    """A measure request from its body, every field checked against ``limits``."""
    members = _read_members(body, limits)
    doc = _request_doc(members["request"])
    fmt = doc.get("format")
    if fmt not in registered_formats():
        raise MeasureError(f"'format' must be one of {', '.join(registered_formats())}, "
                           f"got {fmt!r}")
    model = members["model"]
    if model.dtype != np.uint8 or model.ndim != 1 or model.size == 0:
        raise MeasureError("'model' must be the model file's bytes (a non-empty uint8 array)")
    runs = _count(doc, "runs", 1, limits.max_runs, 100)
    rounds = _count(doc, "rounds", 1, limits.max_rounds, 3)
    if rounds > runs:
        raise MeasureError(f"'rounds' ({rounds}) must not exceed 'runs' ({runs})")
    return MeasureRequest(format=fmt, options=check_options(doc.get("options", {})),
                          model=memoryview(model), sample=_sample(members["sample"]),
                          runs=runs, warmup=_count(doc, "warmup", 0, limits.max_warmup, 10),
                          rounds=rounds)


def device_info(device_id: str, profile: str | None) -> dict[str, Any]:
    """Where a figure was measured: agent id, hardware profile, CPU arch and core count."""
    return {"id": device_id, "profile": profile, "arch": platform.machine(),
            "cpus": os.cpu_count() or 1}


# runtime (Session.backend) -> the distributions that may provide it, preferred first
_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "litert": ("ai-edge-litert", "tflite-runtime"),
}


def runtime_version(backend: str) -> str:
    """The installed version of a runtime, or "unknown"."""
    for dist in _DISTRIBUTIONS.get(backend, ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _timed(run: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _providers(session: Any, options: dict[str, Any]) -> list[str]:
    actual = getattr(session, "providers", None)
    if actual:
        return list(actual)
    return [str(options.get("delegate", "xnnpack"))]


def measure(req: MeasureRequest, device: dict[str, Any]) -> MeasureResult:
    """Load ``req.model`` in a fresh session from a temp folder, time it, remove the folder."""
    folder = Path(tempfile.mkdtemp(prefix="edgekit-measure-"))
    try:
        path = folder / f"candidate.{req.format}"
        path.write_bytes(req.model)
        start = time.perf_counter()
        session = load_session(req.format, path, req.options)
        load_ms = (time.perf_counter() - start) * 1e3
        try:
            return _time_session(session, req, device, load_ms)
        finally:
            session.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _time_session(session: Any, req: MeasureRequest, device: dict[str, Any],
                  load_ms: float) -> MeasureResult:
    if len(session.inputs) != 1:
        raise MeasureError(f"the model has {len(session.inputs)} inputs; measuring takes "
                           "models with one input")
    feed = [quantize(req.sample, session.inputs[0])]
    try:
        session.run(feed)
    except Exception as exc:  # runtimes raise their own untyped errors on a misfit input
        raise MeasureError(f"the model cannot run the sample {list(req.sample.shape)}: "
                           f"{first_line(exc, 200)}; send an input the model takes") from exc
    _timed(lambda: session.run(feed), req.warmup)
    per_round = max(1, req.runs // req.rounds)
    rounds = [_timed(lambda: session.run(feed), per_round) for _ in range(req.rounds)]
    medians = [statistics.median(r) * 1e3 for r in rounds]
    every = [t * 1e3 for r in rounds for t in r]
    return MeasureResult(
        median_ms=min(medians), round_medians_ms=medians, p95_ms=_p95(every),
        min_ms=min(every), runs=per_round * req.rounds, warmup=req.warmup, rounds=req.rounds,
        threads=session.threads, runtime=session.backend,
        runtime_version=runtime_version(session.backend),
        providers=_providers(session, req.options), load_ms=load_ms, device=device)


class Measurer:
    """One measurement at a time: a second concurrent request is refused, not queued."""

    def __init__(self, limits: MeasureLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()

    def run(self, body: bytes, device: dict[str, Any]) -> MeasureResult:
        """Parse and time one request; MeasureBusy while another is running."""
        if not self._lock.acquire(blocking=False):
            raise MeasureBusy("another measurement is running on this device; retry when it "
                              "is done (one at a time)")
        try:
            req = parse_request(body, self.limits)
            try:
                return measure(req, device)
            except ModelLoadError as exc:
                raise MeasureError(str(exc)) from exc
        finally:
            self._lock.release()
