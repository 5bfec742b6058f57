"""The bundle manifest: what a bundle holds, how to feed its model, and how it was made.

Required: schema_version, model, profile, target, files (with a ``model`` role),
inputs, outputs, created_at, created_by. Optional (empty when ``bundle pack``
cannot know them): preprocessing, labels, metrics, lineage, reference_stats,
golden. ``edgekit build`` fills every optional field.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent._check import field as get
from edge_agent._check import no_unknown, non_empty, non_negative, obj, one_of
from edge_agent.bundle.versions import parse_version
from edge_agent.errors import BundleError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
MODEL_ROLE = "model"
_PAYLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _payload_name(value: str) -> str | None:
    if _PAYLOAD_NAME.match(value) and value not in ("manifest.json", "manifest.sig"):
        return None
    return "must be a plain file name (letters, digits, '.', '_', '-'), not a path"


def _sha(value: str) -> str | None:
    return None if _SHA256.match(value) else "must be 64 lowercase hex digits"


def _version(value: str) -> str | None:
    try:
        parse_version(value)
    except BundleError as exc:
        return str(exc)
    return None


@dataclass
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> Quantization:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"scale", "zero_point"}, where, BundleError)
        return cls(scale=get(doc, "scale", (float,), where, BundleError),
                   zero_point=get(doc, "zero_point", (int,), where, BundleError))


@dataclass
class TensorSpec:
    """One model input or output; ``None`` in ``shape`` marks a dynamic dimension."""

    name: str
    shape: list[int | None]
    dtype: str
    layout: str | None = None
    quantization: Quantization | None = None

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> TensorSpec:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"name", "shape", "dtype", "layout", "quantization"}, where, BundleError)
        shape = get(doc, "shape", (list,), where, BundleError)
        for i, dim in enumerate(shape):
            if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 0):
                raise BundleError(f"field '{where}.shape[{i}]' must be a size >= 0 or null")
        quant = doc.get("quantization")
        return cls(
            name=get(doc, "name", (str,), where, BundleError, check=non_empty),
            shape=shape,
            dtype=get(doc, "dtype", (str,), where, BundleError, check=one_of(*DTYPES)),
            layout=get(doc, "layout", (str, type(None)), where, BundleError, default=None),
            quantization=None if quant is None
            else Quantization.from_dict(quant, f"{where}.quantization"),
        )


@dataclass
class FileEntry:
    """One payload file of the bundle, by its name inside the archive."""

    path: str
    sha256: str
    size: int

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> FileEntry:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"path", "sha256", "size"}, where, BundleError)
        return cls(path=get(doc, "path", (str,), where, BundleError, check=_payload_name),
                   sha256=get(doc, "sha256", (str,), where, BundleError, check=_sha),
                   size=get(doc, "size", (int,), where, BundleError, check=non_negative))


@dataclass
class ModelInfo:
    """The model's name and version (integer or MAJOR.MINOR.PATCH, compared numerically)."""

    name: str
    version: str

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ModelInfo:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"name", "version"}, where, BundleError)
        return cls(name=get(doc, "name", (str,), where, BundleError, check=non_empty),
                   version=get(doc, "version", (str,), where, BundleError, check=_version))


@dataclass
class TargetInfo:
    """The format, precision and runtime options (threads, providers, delegate) to run with."""

    format: str
    precision: str
    runtime: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> TargetInfo:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"format", "precision", "runtime"}, where, BundleError)
        return cls(
            format=get(doc, "format", (str,), where, BundleError, check=one_of(*FORMATS)),
            precision=get(doc, "precision", (str,), where, BundleError,
                          check=one_of(*PRECISIONS)),
            runtime=get(doc, "runtime", (dict,), where, BundleError, default={}),
        )


@dataclass
class Golden:
    """A golden input/output pair (payload roles) and the tolerance a device checks it with."""

    input_role: str = "golden_input"
    output_role: str = "golden_output"
    atol: float = 1e-4
    rtol: float = 1e-3

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> Golden:
        doc = obj(doc, where, BundleError)
        no_unknown(doc, {"input_role", "output_role", "atol", "rtol"}, where, BundleError)
        return cls(
            input_role=get(doc, "input_role", (str,), where, BundleError),
            output_role=get(doc, "output_role", (str,), where, BundleError),
            atol=get(doc, "atol", (float,), where, BundleError, check=non_negative),
            rtol=get(doc, "rtol", (float,), where, BundleError, check=non_negative),
        )


_TOP = {"schema_version", "model", "profile", "target", "files", "inputs", "outputs",
        "preprocessing", "labels", "metrics", "lineage", "reference_stats", "golden",
        "created_at", "created_by"}


@dataclass
class Manifest:
    """The parsed, validated ``manifest.json`` of a bundle."""

    model: ModelInfo
    profile: str
    target: TargetInfo
    files: dict[str, FileEntry]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    created_at: str
    created_by: str
    schema_version: int = SCHEMA_VERSION
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    reference_stats: dict[str, Any] = field(default_factory=dict)
    golden: Golden | None = None

    @classmethod
    def from_dict(cls, doc: Any) -> Manifest:
        """Validate a decoded manifest; BundleError names the first bad field."""
        doc = obj(doc, "manifest", BundleError)
        check_schema_version(doc)
        no_unknown(doc, _TOP, "", BundleError)
        files = get(doc, "files", (dict,), "", BundleError)
        manifest = cls(
            schema_version=doc["schema_version"],
            model=ModelInfo.from_dict(get(doc, "model", (dict,), "", BundleError), "model"),
            profile=get(doc, "profile", (str,), "", BundleError, check=non_empty),
            target=TargetInfo.from_dict(get(doc, "target", (dict,), "", BundleError), "target"),
            files={role: FileEntry.from_dict(v, f"files.{role}") for role, v in files.items()},
            inputs=_specs(doc, "inputs"),
            outputs=_specs(doc, "outputs"),
            created_at=get(doc, "created_at", (str,), "", BundleError),
            created_by=get(doc, "created_by", (str,), "", BundleError),
            preprocessing=get(doc, "preprocessing", (dict,), "", BundleError, default={}),
            labels=get(doc, "labels", (list,), "", BundleError, default=[]),
            metrics=get(doc, "metrics", (dict,), "", BundleError, default={}),
            lineage=get(doc, "lineage", (dict,), "", BundleError, default={}),
            reference_stats=get(doc, "reference_stats", (dict,), "", BundleError, default={}),
            golden=None if doc.get("golden") is None
            else Golden.from_dict(doc["golden"], "golden"),
        )
        manifest.check_roles()
        return manifest

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse manifest bytes (UTF-8 JSON)."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError(f"manifest.json is not valid UTF-8 JSON: {exc}") from exc
        return cls.from_dict(doc)

    def check_roles(self) -> None:
        """The model role exists, file names are unique, and golden roles name real files."""
        if MODEL_ROLE not in self.files:
            raise BundleError("manifest lists no 'model' file under 'files'")
        paths = [f.path for f in self.files.values()]
        if len(set(paths)) != len(paths):
            raise BundleError("manifest lists the same payload file under two roles")
        if self.golden:
            for role in (self.golden.input_role, self.golden.output_role):
                if role not in self.files:
                    raise BundleError(f"golden check names file role '{role}' that is not listed")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``None`` optionals are left out."""
        doc = asdict(self)
        if doc["golden"] is None:
            del doc["golden"]
        return doc

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys) — what the signature covers."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1).encode("utf-8")


def check_schema_version(doc: dict[str, Any]) -> None:
    """Reject a manifest written by a newer (or unknown) schema before reading further."""
    version = get(doc, "schema_version", (int,), "", BundleError)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise BundleError(
            f"manifest schema_version {version} is not supported (this edgekit reads "
            f"{supported}); upgrade edgekit on this machine or rebuild the bundle"
        )


def _specs(doc: dict[str, Any], key: str) -> list[TensorSpec]:
    items = get(doc, key, (list,), "", BundleError, check=non_empty)
    return [TensorSpec.from_dict(item, f"{key}[{i}]") for i, item in enumerate(items)]
