"""The bundle contract: one signed ``.ekb`` file holding a model and its manifest."""

from edge_agent.bundle.manifest import (
    SCHEMA_VERSION,
    FileEntry,
    Golden,
    Manifest,
    ModelInfo,
    Quantization,
    TargetInfo,
    TensorSpec,
)
from edge_agent.bundle.reader import OpenedBundle, ReadLimits, open_bundle, read_manifest_unverified
from edge_agent.bundle.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    trusted_keys,
)
from edge_agent.bundle.versions import is_newer, parse_version
from edge_agent.bundle.writer import write_bundle

__all__ = [
    "SCHEMA_VERSION",
    "FileEntry",
    "Golden",
    "Manifest",
    "ModelInfo",
    "OpenedBundle",
    "Quantization",
    "ReadLimits",
    "TargetInfo",
    "TensorSpec",
    "generate_keypair",
    "is_newer",
    "key_id",
    "load_private_key",
    "load_public_key",
    "open_bundle",
    "parse_version",
    "read_manifest_unverified",
    "trusted_keys",
    "write_bundle",
]
