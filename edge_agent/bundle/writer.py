"""Pack payload files and a manifest into a signed ``.ekb`` bundle (a zip archive)."""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.bundle.archive import file_digest, fsync_dir
from edge_agent.bundle.manifest import FileEntry, Manifest
from edge_agent.bundle.signing import sign_manifest
from edge_agent.errors import BundleError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"


def write_bundle(manifest: Manifest, payloads: dict[str, Path], key: Ed25519PrivateKey,
                 out_path: Path) -> Manifest:
    """Hash ``payloads`` (role -> file) into the manifest, sign it and write ``out_path``.

    The archive is written to a temp file beside ``out_path`` and renamed into
    place, so an existing bundle is never replaced by a half-written one.
    Returns the manifest as written (with its ``files`` filled).
    """
    files = {}
    for role, src in payloads.items():
        if not Path(src).is_file():
            raise BundleError(f"payload '{role}' file {src} does not exist")
        sha, size = file_digest(Path(src))
        files[role] = FileEntry(path=_archive_name(role, Path(src)), sha256=sha, size=size)
    final = replace(manifest, files=files)
    final = Manifest.from_dict(final.to_dict())  # validate exactly what will be signed
    manifest_bytes = final.to_json()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST_NAME, manifest_bytes)
            zf.writestr(SIGNATURE_NAME, sign_manifest(manifest_bytes, key))
            for role, src in payloads.items():
                zf.write(src, arcname=files[role].path)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(out_path.parent)
    return final


def _archive_name(role: str, src: Path) -> str:
    """Payload names inside the archive: the role plus the source's suffix (model.onnx)."""
    return f"{role}{src.suffix}"
