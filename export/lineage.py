"""Where a bundle came from: hashes of the source weights and calibration set, tool versions."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from edge_agent.contracts.build_info import Compression, Lineage

TOOLS = ("edgekit", "torch", "torch-pruning", "neural-compressor", "onnx", "onnxscript",
         "onnxruntime", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "numpy")


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools a build uses (missing ones are left out)."""
    found = {}
    for name in TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 over tensors' shapes, dtypes and bytes (a data set's fingerprint)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{list(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's state_dict (names, shapes and values), for factory-only models."""
    state = model.state_dict()
    return tensors_sha256(*[state[k] for k in sorted(state)])


def lineage(source: dict[str, Any], recipe: dict[str, Any], calibration_sha256: str,
            parent_version: str | None, compression: Compression) -> Lineage:
    """The manifest's ``lineage`` block (``source``: the source_* fields and ``data``)."""
    return Lineage(**source, recipe=recipe, calibration_sha256=calibration_sha256,
                   tools=tool_versions(), parent_version=parent_version,
                   compression=compression)
