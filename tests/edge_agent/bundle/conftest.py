"""Hand-made bundles, good and hostile, for the reader tests."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.bundle.signing import sign_manifest

MODEL_BYTES = b"not really a model, but the reader does not care" * 10


def manifest_doc(payloads: dict[str, bytes]) -> dict:
    """A valid manifest for ``payloads`` (archive name -> bytes); first one is the model."""
    names = list(payloads)
    files = {("model" if i == 0 else f"extra{i}"): {
        "path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for i, (name, data) in enumerate(payloads.items())}
    assert names
    return {
        "schema_version": "1.1",
        "model": {"name": "digits", "version": "3"},
        "profile": "rpi4",
        "target": {"format": "onnx", "precision": "fp32", "runtime": {"threads": 4}},
        "files": files,
        "inputs": [{"name": "x", "shape": [None, 1, 8, 8], "dtype": "float32"}],
        "outputs": [{"name": "probs", "shape": [None, 10], "dtype": "float32"}],
        "created_at": "2026-11-21T00:00:00+00:00",
        "created_by": "tests",
    }


@pytest.fixture()
def make_bundle(tmp_path: Path, private_key) -> Callable[..., Path]:
    """Write a bundle by hand; keyword arguments bend it into each hostile shape."""
    counter = iter(range(10_000))

    def make(payloads: dict[str, bytes] | None = None, doc: dict | None = None,
             sign: bool = True, key=None, extra_members: list[tuple] = (),
             tamper: Callable[[bytes], bytes] | None = None,
             payload_override: dict[str, bytes] | None = None) -> Path:
        payloads = payloads if payloads is not None else {"model.onnx": MODEL_BYTES}
        doc = doc if doc is not None else manifest_doc(payloads)
        manifest = json.dumps(doc, sort_keys=True).encode()
        signature = sign_manifest(manifest, key or private_key)
        if tamper:
            manifest = tamper(manifest)
        path = tmp_path / f"b{next(counter)}.ekb"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", manifest)
            if sign:
                zf.writestr("manifest.sig", signature)
            members = payloads if payload_override is None else payload_override
            for name, data in members.items():
                zf.writestr(name, data)
            for member in extra_members:
                info, data = member
                zf.writestr(info, data)
        return path

    return make


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info
