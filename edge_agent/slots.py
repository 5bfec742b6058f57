"""The model store: verified bundles in slots, and one atomically replaced pointer file.

Layout under the state folder::

    models/<version>-<sha12>/bundle.ekb   one verified bundle per slot (kept as signed)
    current.json          {"current": slot, "previous": slot|null, "probation": bool}
    work/                                 extracted bundles in use (cleared at start)

A slot is written and fsynced before the pointer names it, and the pointer is
replaced by rename, so a process killed at any moment leaves a pointer to a
complete slot. Loading re-verifies the file hash, the signature, every payload
hash and the golden output; if the current slot fails, the previous one serves.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.bundle.archive import atomic_write, file_digest, fsync_dir
from edge_agent.bundle.reader import OpenedBundle, open_bundle
from edge_agent.errors import BundleError, EdgekitError, ModelLoadError
from edge_agent.model import LoadedModel

log = logging.getLogger(__name__)
POINTER = "current.json"


@dataclass
class SlotRecord:
    """Which bundle a slot holds: its folder name, model name/version and file sha256."""

    slot: str
    name: str
    version: str
    sha256: str

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SlotRecord:
        return cls(slot=str(doc["slot"]), name=str(doc["name"]), version=str(doc["version"]),
                   sha256=str(doc["sha256"]))


@dataclass
class ActiveModel:
    """A loaded, verified model and the slot it came from."""

    record: SlotRecord
    bundle: OpenedBundle
    model: LoadedModel

    def close(self) -> None:
        """Release the runtime and the extracted files."""
        self.model.session.close()
        self.bundle.cleanup()


class ModelStore:
    """Keeps the current and previous models on disk and loads them safely."""

    def __init__(self, state_dir: Path, trusted: dict[str, Ed25519PublicKey]) -> None:
        self.root = Path(state_dir)
        self.trusted = trusted
        self.models = self.root / "models"
        self.work = self.root / "work"
        for folder in (self.root, self.models):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)  # extractions left by a crash
        self.work.mkdir()
        os.chmod(str(self.root), 0o700)
        self._lock = threading.RLock()  # every read-modify-write of the pointer holds it

    # pointer -----------------------------------------------------------------
    def pointer(self) -> dict[str, Any]:
        """The pointer document; empty when nothing is installed yet."""
        path = self.root / POINTER
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError as exc:  # cannot happen with atomic writes, but never trust disk
            raise EdgekitError(f"{path} is corrupt; remove it and start with --bundle") from exc

    def _write_pointer(self, current: SlotRecord, previous: SlotRecord | None,
                       probation: bool, boots: int = 0, probation_cmd: str | None = None) -> None:
        doc = {"current": asdict(current), "previous": asdict(previous) if previous else None,
               "probation": probation, "probation_boots": boots,
               "probation_cmd": probation_cmd if probation else None}
        atomic_write(self.root / POINTER, json.dumps(doc, indent=1).encode())

    def note_probation_boot(self) -> int:
        """Count a start while the current model is in probation (catches crash loops)."""
        with self._lock:
            doc = self.pointer()
            boots = int(doc.get("probation_boots", 0)) + 1
            cur = self.current()
            if cur is not None:
                self._write_pointer(cur, self.previous(), True, boots, doc.get("probation_cmd"))
            return boots

    def probation_cmd(self) -> str | None:
        """The cmd_id of the update whose probation is running (kept across restarts)."""
        return self.pointer().get("probation_cmd")

    def current(self) -> SlotRecord | None:
        """The record the pointer names as current, if any."""
        doc = self.pointer().get("current")
        return SlotRecord.from_dict(doc) if doc else None

    def previous(self) -> SlotRecord | None:
        """The record kept for rollback, if any."""
        doc = self.pointer().get("previous")
        return SlotRecord.from_dict(doc) if doc else None

    def in_probation(self) -> bool:
        """True while the current model has not yet passed its probation."""
        return bool(self.pointer().get("probation"))

    # slots -------------------------------------------------------------------
    def stage(self, bundle_file: Path) -> SlotRecord:
        """Verify a bundle file and copy it into a new slot (fsynced); the pointer is untouched."""
        sha, _ = file_digest(bundle_file)
        with open_bundle(bundle_file, self.trusted, workdir=self.work) as opened:
            name, version = opened.manifest.model.name, opened.manifest.model.version
        slot = f"{version}-{sha[:12]}"
        folder = self.models / slot
        tmp = self.models / f".{slot}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        shutil.copyfile(bundle_file, tmp / "bundle.ekb")
        with open(tmp / "bundle.ekb", "rb") as fh:
            os.fsync(fh.fileno())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(str(tmp), str(folder))
        fsync_dir(self.models)
        return SlotRecord(slot=slot, name=name, version=version, sha256=sha)

    def open_slot(self, record: SlotRecord) -> ActiveModel:
        """Re-verify a slot (file hash, signature, payloads, golden) and load its model."""
        path = self.models / record.slot / "bundle.ekb"
        if not path.is_file():
            raise BundleError(f"slot {record.slot} has no bundle file")
        sha, _ = file_digest(path)
        if sha != record.sha256:
            raise BundleError(f"slot {record.slot} bundle hash changed on disk; refusing it")
        opened = open_bundle(path, self.trusted, workdir=self.work)
        try:
            return ActiveModel(record=record, bundle=opened, model=LoadedModel.load(opened))
        except BaseException:
            opened.cleanup()
            raise

    def switch(self, new: SlotRecord, probation: bool, probation_cmd: str | None = None) -> None:
        """Make ``new`` current and keep the old current as previous (one atomic rename)."""
        with self._lock:
            self._write_pointer(new, self.current(), probation, 0, probation_cmd)

    def end_probation(self) -> None:
        """The current model passed probation."""
        with self._lock:
            cur = self.current()
            if cur:
                self._write_pointer(cur, self.previous(), False)

    def rollback(self, expected: SlotRecord) -> None:
        """Make ``expected`` (the previous model, already loaded and verified) current again.

        Callers load the previous slot first and call this only when it works, so the
        pointer never names a model that cannot serve.
        """
        with self._lock:
            if self.previous() != expected:
                raise EdgekitError("the kept previous model changed meanwhile; not rolling back")
            self._write_pointer(expected, None, False)

    def load_best(self) -> ActiveModel:
        """Load current; if it fails verification or its golden check, fall back to previous."""
        cur, prev = self.current(), self.previous()
        if cur is None:
            raise EdgekitError("no model installed; start the agent with --bundle FILE.ekb")
        try:
            return self.open_slot(cur)
        except (EdgekitError, OSError) as exc:
            if prev is None:
                raise
            log.error("current model %s v%s failed (%s); falling back to v%s", cur.name,
                      cur.version, exc, prev.version)
            active = self.open_slot(prev)
            with self._lock:
                self._write_pointer(prev, None, False)
            return active

    def gc(self) -> None:
        """Delete slots that neither current nor previous names."""
        keep = {r.slot for r in (self.current(), self.previous()) if r}
        for folder in self.models.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)


__all__ = ["ActiveModel", "ModelLoadError", "ModelStore", "SlotRecord"]
