"""The bundle manifest: what a bundle holds, how to feed its model, and how it was made.

Required: schema_version, model, profile, target, files (with a ``model`` role),
inputs, outputs, created_at, created_by. Optional (empty when ``bundle pack``
cannot know them): preprocessing, labels, metrics, lineage, reference_stats,
golden. ``edgekit build`` fills every optional field. The blocks are typed
records: ``Metrics``, ``Lineage``, ``Preprocessing`` (``edge_agent.contracts.build_info``)
and ``ReferenceStats`` (``edge_agent.contracts.reference``).

``schema_version`` is ``"MAJOR.MINOR"`` (now ``SCHEMA_VERSION`` = ``"1.2"``, which added
``task``; the integer ``1`` of the first release reads as ``"1.0"``). A reader refuses an
unknown major with one line and reads a newer minor leniently: unknown fields at
any depth are skipped, listed in ``Manifest.unknown_fields`` (dotted paths) and
counted process-wide under ``"manifest:<path>"`` in
``edge_agent.contracts.unknown_field_counts()``. A manifest of this minor or an
older one is read strictly, and the writer checks what it signs with a strict read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent._check import non_empty, non_negative, obj, one_of
from edge_agent.bundle.versions import parse_version
from edge_agent.contracts.build_info import Lineage, Metrics, Preprocessing
from edge_agent.contracts.record import Record, meta
from edge_agent.contracts.reference import ReferenceStats
from edge_agent.contracts.task import Task
from edge_agent.contracts.version import Version, check_readable
from edge_agent.contracts.version import parse_version as parse_contract_version
from edge_agent.contracts.vocab import DTYPES, FORMATS, PRECISIONS
from edge_agent.errors import BundleError

SCHEMA_VERSION = Version(1, 2)
__all__ = ["DTYPES", "FORMATS", "PRECISIONS", "SCHEMA_VERSION", "Manifest"]
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


def _dims(shape: list) -> str | None:
    bad = next((i for i, d in enumerate(shape) if d is not None and d < 0), None)
    return None if bad is None else f"[{bad}] must be a size >= 0 or null"


class _Part(Record):
    ERROR: ClassVar[type[Exception]] = BundleError


@dataclass
class Quantization(_Part):
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass
class TensorSpec(_Part):
    """One model input or output; ``None`` in ``shape`` marks a dynamic dimension."""

    name: str = field(metadata=meta(non_empty))
    shape: list[int | None] = field(metadata=meta(_dims))
    dtype: str = field(metadata=meta(one_of(*DTYPES)))
    layout: str | None = None
    quantization: Quantization | None = None


@dataclass
class FileEntry(_Part):
    """One payload file of the bundle, by its name inside the archive."""

    path: str = field(metadata=meta(_payload_name))
    sha256: str = field(metadata=meta(_sha))
    size: int = field(metadata=meta(non_negative))


@dataclass
class ModelInfo(_Part):
    """The model's name and version (integer or MAJOR.MINOR.PATCH, compared numerically)."""

    name: str = field(metadata=meta(non_empty))
    version: str = field(metadata=meta(_version))


@dataclass
class TargetInfo(_Part):
    """The format, precision and runtime options (threads, providers, delegate) to run with."""

    format: str = field(metadata=meta(one_of(*FORMATS)))
    precision: str = field(metadata=meta(one_of(*PRECISIONS)))
    runtime: dict[str, Any] = field(default_factory=dict)


@dataclass
class Golden(_Part):
    """A golden input/output pair (payload roles) and the tolerance a device checks it with."""

    input_role: str = "golden_input"
    output_role: str = "golden_output"
    atol: float = field(default=1e-4, metadata=meta(non_negative))
    rtol: float = field(default=1e-3, metadata=meta(non_negative))


@dataclass
class Manifest(_Part):
    """The parsed, validated ``manifest.json`` of a bundle."""

    CONTRACT: ClassVar[str] = "manifest"
    model: ModelInfo
    profile: str = field(metadata=meta(non_empty))
    target: TargetInfo
    files: dict[str, FileEntry]
    inputs: list[TensorSpec] = field(metadata=meta(non_empty))
    outputs: list[TensorSpec] = field(metadata=meta(non_empty))
    created_at: str
    created_by: str
    schema_version: str = field(default=str(SCHEMA_VERSION), compare=False)
    """As read (a newer minor stays visible); ``to_dict`` always writes ``SCHEMA_VERSION``."""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: list[str] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    lineage: Lineage = field(default_factory=Lineage)
    reference_stats: ReferenceStats = field(default_factory=ReferenceStats)
    golden: Golden | None = None
    task: Task = field(default_factory=Task)
    """What the model computes (``classification`` when absent: manifests before 1.2)."""

    @classmethod
    def from_dict(cls, doc: Any, where: str = "", error: type[Exception] | None = None,
                  lenient: bool = False) -> Manifest:
        """Validate a decoded manifest; BundleError names the first bad field."""
        doc = obj(doc, "manifest", BundleError)
        version = read_schema_version(doc)
        doc = dict(doc, schema_version=str(version))
        newer = version.minor > SCHEMA_VERSION.minor
        manifest = super().from_dict(doc, where, error, lenient or newer)
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
        """Plain JSON-ready dict at ``SCHEMA_VERSION``; a ``None`` golden is left out."""
        doc = dict(super().to_dict(), schema_version=str(SCHEMA_VERSION))
        if doc["golden"] is None:
            del doc["golden"]
        return doc

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys) — what the signature covers."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, allow_nan=False).encode("utf-8")


def read_schema_version(doc: dict[str, Any]) -> Version:
    """The manifest's schema version; refuses an unknown major before reading further."""
    if "schema_version" not in doc:
        raise BundleError("missing field 'schema_version'; is this an edgekit manifest?")
    version = parse_contract_version(doc["schema_version"], "schema_version", BundleError)
    check_readable(version, SCHEMA_VERSION, "manifest schema_version",
                   "upgrade edgekit on this machine or rebuild the bundle", BundleError)
    return version
