"""Writing files so that a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from edge_agent.hashing import Sha256

CHUNK = 1 << 20


def fsync_dir(folder: Path) -> None:
    """Make a rename or creation inside ``folder`` durable."""
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and a rename."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    tmp = Path(tmp_name)  # unique per call: concurrent writers never share a temp file
    os.fchmod(fd, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def file_digest(path: Path) -> tuple[str, int]:
    """The sha256 hex digest and size of a file, read in chunks."""
    digest, size = Sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_limited(src: BinaryIO, dst: BinaryIO, limit: int) -> tuple[str, int]:
    """Copy at most ``limit`` bytes; return (sha256, size), size ``limit + 1`` if it went over."""
    digest, size = Sha256(), 0
    while True:
        chunk = src.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            return digest.hexdigest(), size
        digest.update(chunk)
        size += len(chunk)
        dst.write(chunk)
        if size > limit:
            return digest.hexdigest(), size
