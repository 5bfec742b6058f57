"""Open a bundle safely: every check passes before anything is trusted or used.

A bundle is hostile until proven otherwise. Reading it never follows a path
outside its own private temporary folder, never loads pickles, never trusts the
archive's own size claims beyond the manifest's, and rejects each kind of
trouble with its own error: traversal, absolute paths, symlinks, duplicate or
unexpected members, oversize or highly compressed members, missing files, hash
mismatch, unsigned or tampered manifests, untrusted keys, unknown schema
versions and unknown profiles.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.bundle.archive import copy_limited
from edge_agent.bundle.manifest import Manifest
from edge_agent.bundle.signing import verify_manifest
from edge_agent.bundle.writer import MANIFEST_NAME, SIGNATURE_NAME
from edge_agent.errors import BundleError, SignatureError


@dataclass(frozen=True)
class ReadLimits:
    """Caps that keep a hostile archive from exhausting disk or memory."""

    max_members: int = 32
    max_manifest_bytes: int = 8 << 20
    max_member_bytes: int = 1 << 30
    max_total_bytes: int = 2 << 30
    max_ratio: float = 200.0  # uncompressed / compressed, for members over 1 MiB


@dataclass
class OpenedBundle:
    """A verified bundle extracted into a private folder; use as a context manager."""

    manifest: Manifest
    folder: Path
    key_id: str | None
    manifest_bytes: bytes

    def path(self, role: str) -> Path:
        """The extracted file of a payload role, e.g. ``path('model')``."""
        return self.folder / self.manifest.files[role].path

    def cleanup(self) -> None:
        """Remove the extracted folder."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> OpenedBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def open_bundle(path: Path, trusted: dict[str, Ed25519PublicKey],
                known_profiles: Collection[str] | None = None,
                workdir: Path | None = None, limits: ReadLimits = ReadLimits()) -> OpenedBundle:
    """Verify and extract a bundle into a fresh private folder (under ``workdir`` if given)."""
    with _open_zip(path) as zf:
        members = _checked_members(zf, limits)
        manifest_bytes = _read_small(zf, members[MANIFEST_NAME], limits.max_manifest_bytes)
        if SIGNATURE_NAME not in members:
            raise SignatureError("bundle is unsigned (no manifest.sig); sign it with --key")
        sig_bytes = _read_small(zf, members[SIGNATURE_NAME], 4096)
        kid = verify_manifest(manifest_bytes, sig_bytes, trusted)
        manifest = Manifest.from_json(manifest_bytes)
        _check_profile(manifest, known_profiles)
        _check_payload_set(manifest, members)
        folder = Path(tempfile.mkdtemp(prefix="edgekit-bundle-", dir=workdir))
        try:
            _extract_payloads(zf, manifest, members, folder, limits)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return OpenedBundle(manifest=manifest, folder=folder, key_id=kid,
                        manifest_bytes=manifest_bytes)


def read_manifest_unverified(path: Path, limits: ReadLimits = ReadLimits()) -> Manifest:
    """The manifest of a bundle for display, after the archive checks but without a key."""
    with _open_zip(path) as zf:
        members = _checked_members(zf, limits)
        return Manifest.from_json(_read_small(zf, members[MANIFEST_NAME],
                                              limits.max_manifest_bytes))


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {path} does not exist") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path} is not an edgekit bundle (not a readable zip archive)") from exc


def _checked_members(zf: zipfile.ZipFile, limits: ReadLimits) -> dict[str, zipfile.ZipInfo]:
    infos: list[zipfile.ZipInfo] = zf.infolist()
    if len(infos) > limits.max_members:
        raise BundleError(f"bundle has {len(infos)} members; at most {limits.max_members} allowed")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_name(info)
        if info.filename in members:
            raise BundleError(f"bundle member '{info.filename}' appears twice")
        members[info.filename] = info
    if MANIFEST_NAME not in members:
        raise BundleError("bundle has no manifest.json; build it with 'edgekit bundle pack'")
    return members


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"bundle member '{name}' has an absolute path")
    if ".." in pure.parts:
        raise BundleError(f"bundle member '{name}' tries to escape its folder (path traversal)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BundleError(f"bundle member '{name}' is a symbolic link; links are not allowed")
    if info.is_dir() or len(pure.parts) != 1 or "\\" in name or "\x00" in name:
        raise BundleError(f"bundle member '{name}' is not a plain top-level file")


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    if info.file_size > cap:
        raise BundleError(f"bundle member '{info.filename}' is {info.file_size} bytes; cap {cap}")
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise BundleError(f"bundle member '{info.filename}' is larger than its cap of {cap} bytes")
    return data


def _check_profile(manifest: Manifest, known: Collection[str] | None) -> None:
    if known is not None and manifest.profile not in known:
        raise BundleError(
            f"bundle is for profile '{manifest.profile}', which does not exist here; "
            f"known: {', '.join(sorted(known))}"
        )


def _check_payload_set(manifest: Manifest, members: dict[str, zipfile.ZipInfo]) -> None:
    listed = {entry.path for entry in manifest.files.values()}
    present = set(members) - {MANIFEST_NAME, SIGNATURE_NAME}
    missing, extra = sorted(listed - present), sorted(present - listed)
    if missing:
        raise BundleError(f"bundle is missing payload file '{missing[0]}' listed in its manifest")
    if extra:
        raise BundleError(f"bundle holds file '{extra[0]}' that its manifest does not list")


def _extract_payloads(zf: zipfile.ZipFile, manifest: Manifest,
                      members: dict[str, zipfile.ZipInfo], folder: Path,
                      limits: ReadLimits) -> None:
    total = 0
    for role, entry in manifest.files.items():
        info = members[entry.path]
        _check_sizes(info, entry.size, limits)
        total += entry.size
        if total > limits.max_total_bytes:
            raise BundleError(f"bundle payloads exceed the total cap of {limits.max_total_bytes}")
        target = folder / entry.path
        fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
            sha, size = copy_limited(src, dst, entry.size)
        if size != entry.size or sha != entry.sha256:
            raise BundleError(
                f"payload '{entry.path}' ({role}) does not match the manifest's sha256/size: "
                "the bundle is corrupt or was tampered with"
            )


def _check_sizes(info: zipfile.ZipInfo, declared: int, limits: ReadLimits) -> None:
    name = info.filename
    if declared > limits.max_member_bytes or info.file_size > limits.max_member_bytes:
        raise BundleError(f"payload '{name}' is over the per-file cap of {limits.max_member_bytes}")
    if info.file_size != declared:
        raise BundleError(f"payload '{name}' size {info.file_size} differs from the manifest's "
                          f"{declared}: the bundle is corrupt or was tampered with")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > (1 << 20) and ratio > limits.max_ratio:
        raise BundleError(f"payload '{name}' is compressed over {limits.max_ratio:.0f}:1, "
                          "which looks like a zip bomb; refusing it")
