"""Commands from the cloud: update, rollback, set-config, ping — and the update's probation.

Every command gets exactly one result on ``cmd/result`` (an update gets a
second, final one when its probation ends). Malformed or unknown commands get
an error result; nothing here may raise into the agent's threads.

Commands are journaled (:mod:`edge_agent.command_journal`) before the broker is
told they arrived; a repeated ``cmd_id`` gets the stored result again instead of
running twice; a command past its ``expires_at`` is answered with an error and not
run. Handlers see the agent through :class:`CommandHost`, a narrow interface: the
serving state (:class:`edge_agent.serving.Serving`), the model store, the journal
and the status.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_agent import protocol as proto
from edge_agent.bundle.archive import file_digest
from edge_agent.bundle.reader import open_bundle
from edge_agent.bundle.versions import is_newer
from edge_agent.command_journal import ANSWERED, NEW, CommandJournal
from edge_agent.errors import EdgekitError
from edge_agent.golden import load_arrays
from edge_agent.memory import release_free_memory
from edge_agent.probation import Probation, latency_regressed
from edge_agent.slots import ActiveModel

if TYPE_CHECKING:
    from typing import Protocol

    from edge_agent.config import UpdatePolicy
    from edge_agent.serving import Serving
    from edge_agent.slots import ModelStore

    class CommandHost(Protocol):
        """What command handlers may use of the agent, and nothing more."""

        device_id: str
        profile: str
        state_dir: Path
        update_policy: UpdatePolicy
        serving: Serving
        store: ModelStore
        journal: CommandJournal

        def topic(self, kind: str) -> str: ...
        def publish(self, kind: str, build: Callable[[int], bytes]) -> int: ...
        def set_status(self, state: str, reason: str = "",
                       detail: dict[str, Any] | None = None) -> None: ...
        def model_info(self) -> dict[str, Any]: ...

log = logging.getLogger(__name__)


MAX_ERROR_CHARS = 1000


class UpdateRejected(EdgekitError):
    """An offered update failed a check; the current model keeps serving."""


LATENCY_CONFIRMATIONS = 3
"""An update is refused for latency only if every one of this many interleaved
measurements shows the regression: a burst of load on the device (another process,
the cores shared with a second agent) slows one measurement, a slower model all."""


def golden_latencies_ms(models: list[ActiveModel], runs: int = 21,
                        warmup: int = 5) -> list[float]:
    """Median latency of each model on its own golden input, measured interleaved.

    Each model is warmed up first (a fresh interpreter packs its weights on its first
    runs), then the models take turns, so load on the machine hits them alike.
    """
    feeds = []
    for active in models:
        m = active.model.manifest
        feeds.append(load_arrays(active.bundle.path(m.golden.input_role)) if m.golden else None)
    for active, feed in zip(models, feeds):
        for _ in range(warmup if feed is not None else 0):
            active.model.session.run(feed)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for i, (active, feed) in enumerate(zip(models, feeds)):
            if feed is None:
                continue
            start = time.perf_counter()
            active.model.session.run(feed)
            times[i].append((time.perf_counter() - start) * 1000.0)
    return [float(np.median(t)) if t else float("nan") for t in times]


class CommandHandler:
    """Journals commands, dispatches them by type and answers each one."""

    def __init__(self, host: CommandHost) -> None:
        self.host = host
        self.lock = threading.RLock()
        self.handlers: dict[str, Callable[[proto.Command], dict[str, Any]]] = {
            "update": self.update, "rollback": self.rollback,
            "set-config": self.set_config, "ping": self.ping,
        }

    # receipt and dispatch ------------------------------------------------------
    def receive(self, payload: bytes) -> bool:
        """Journal a command as it arrives; True when it is new and must be executed.

        A repeated ``cmd_id`` is not executed: answered ones get their stored result
        again, pending ones are already on their way. A payload without a usable
        ``cmd_id`` is answered with its error at once.
        """
        cmd_id, ctype = command_ids(payload)
        if cmd_id == "unknown":
            self.execute(payload)  # cannot be journaled; it can only fail, once
            return False
        seen = self.host.journal.record(cmd_id, ctype, payload)
        if seen.state == ANSWERED and seen.result is not None:
            log.info("command %s seen again; sending its stored result", cmd_id)
            self.host.journal.resend(self.host.topic(proto.CMD_RESULT), seen.result)
        return seen.state == NEW

    def handle(self, payload: bytes) -> None:
        """Journal and, if new, execute one raw command payload now; never raises."""
        if self.receive(payload):
            self.execute(payload)

    def resume(self) -> None:
        """Execute the commands journaled but not answered (at start, and when idle)."""
        for cmd_id, payload in self.host.journal.pending():
            if cmd_id == self.host.store.probation_cmd() and self.host.serving.probation:
                # killed after its switch: the update is in probation, not to be run again
                version = self.host.serving.active.record.version
                self.result(cmd_id, "update", True, None,
                            {"phase": "probation", "final": False, "version": version})
                continue
            log.info("executing command %s journaled before a restart", cmd_id)
            self.execute(payload)

    def execute(self, payload: bytes) -> None:
        """Run one command and answer it; never raises."""
        cmd_id, ctype = command_ids(payload)
        try:
            cmd = proto.Command.from_json(payload)
            cmd_id, ctype = cmd.cmd_id, cmd.type
            if self.host.journal.state(cmd_id) == ANSWERED:
                return  # queued twice (the idle sweep and the queue): run once
            expired = _expired(cmd)
            if expired:
                raise CommandExpired(expired)
            with self.lock:  # commands and probation decisions never interleave
                detail = self.handlers[cmd.type](cmd)
            self.result(cmd_id, ctype, True, None, detail)
        except (EdgekitError, OSError) as exc:
            self.result(cmd_id, ctype, False, str(exc), getattr(exc, "result_detail", {}))
        except Exception as exc:  # a bug must not kill the command thread
            log.exception("command %s failed", cmd_id)
            self.result(cmd_id, ctype, False, f"internal error: {type(exc).__name__}: {exc}", {})

    def result(self, cmd_id: str, ctype: str, ok: bool, error: str | None,
               detail: dict[str, Any]) -> None:
        """Queue a cmd/result (journaled when the command is); errors are cut to a bound."""
        h = self.host
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + "…"
        device_id, incarnation = h.device_id, h.journal.outbox.incarnation

        def build(seq: int) -> bytes:
            return proto.CommandResult(device_id=device_id, seq=seq, ts=time.time(),
                                       cmd_id=cmd_id[:64], type=ctype[:32], ok=ok, error=error,
                                       detail=detail, incarnation=incarnation).to_json()
        if h.journal.state(cmd_id) is not None:
            h.journal.answer(cmd_id, h.topic(proto.CMD_RESULT), build)
        else:
            h.publish(proto.CMD_RESULT, build)

    # simple commands ---------------------------------------------------------
    def ping(self, cmd: proto.Command) -> dict[str, Any]:
        """Answer with what is being served and the settings in force."""
        return {"model": self.host.model_info(),
                "probation": self.host.serving.probation is not None,
                "settings": self.host.serving.settings_dict()}

    def set_config(self, cmd: proto.Command) -> dict[str, Any]:
        """Change telemetry interval or sampling at run time (kept across updates/restarts)."""
        return {"applied": self.host.serving.apply(cmd.args),
                "settings": self.host.serving.settings_dict()}

    def rollback(self, cmd: proto.Command) -> dict[str, Any]:
        """Go back to the kept previous model (the only way to an older version).

        The command names the version to leave (``from_version``); when this device runs
        another one, nothing changes and the answer is an error carrying
        ``running_version``: a rollback sent for one update, arriving late (a resend, a
        queued delivery) after another, must not undo that other. A command without the
        field (protocol 1.0/1.1, or written by hand) rolls back as before.
        """
        leave = cmd.typed_args().from_version
        running = self.host.serving.active.record.version
        if leave is not None and leave != running:
            raise RollbackRefused(leave, running)
        record = self.roll_back("rollback command")
        return {"model": {"name": record.name, "version": record.version}}

    # update ------------------------------------------------------------------
    def update(self, cmd: proto.Command) -> dict[str, Any]:
        """Download, verify, stage, golden-check, switch; then probation decides."""
        from edge_agent.download import download  # urllib/ssl: loaded only when updating

        a, args = self.host, cmd.typed_args()
        if a.serving.probation is not None:
            raise UpdateRejected("an update is still in probation; wait for its result")
        a.set_status("updating", f"installing version {args.version}", {"version": args.version})
        downloads = a.state_dir / "downloads"
        downloads.mkdir(exist_ok=True)
        path = downloads / f"{args.sha256}.ekb"
        try:
            policy = a.update_policy
            download(args.url, path, policy.max_download_bytes, policy.download_timeout_s,
                     policy.download_retries, args.size)
            new = self._verify_and_load(path, args)
        except BaseException:
            a.set_status("online")
            raise
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
        try:
            baseline = self._check_latency(new)
            self.switch(new, probation=True, cmd_id=cmd.cmd_id)
        except BaseException:
            self._discard(new)
            raise
        a.serving.begin_probation(Probation(a.update_policy, baseline), cmd.cmd_id)
        a.set_status("online", f"version {new.record.version} in probation",
                     {"probation": True})
        return {"phase": "probation", "final": False, "version": new.record.version}

    def _discard(self, new: ActiveModel) -> None:
        """A staged model that will not be served: close it and free its slot."""
        a = self.host
        new.close()
        if a.store.current() != new.record:
            shutil.rmtree(a.store.models / new.record.slot, ignore_errors=True)
        a.set_status("online")

    def _verify_and_load(self, path: Path, args: proto.UpdateArgs) -> ActiveModel:
        a = self.host
        sha, _ = file_digest(path)
        if sha != args.sha256:
            raise UpdateRejected(f"downloaded bundle sha256 {sha[:12]}… does not match the "
                                 f"command's {args.sha256[:12]}…")
        with open_bundle(path, a.store.trusted, workdir=a.store.work) as opened:
            m = opened.manifest
        if m.profile != a.profile:
            raise UpdateRejected(f"bundle is for profile '{m.profile}'; this device is "
                                 f"'{a.profile}'")
        if m.model.version != args.version:
            raise UpdateRejected(f"command says version {args.version}, bundle is "
                                 f"{m.model.version}")
        installed = a.serving.active.record.version
        if not is_newer(m.model.version, installed):
            raise UpdateRejected(f"version {m.model.version} is not newer than installed "
                                 f"{installed} (anti-rollback; use the rollback command)")
        record = a.store.stage(path)
        try:
            return a.store.open_slot(record)  # re-verifies and runs the golden check
        except BaseException:
            shutil.rmtree(a.store.models / record.slot, ignore_errors=True)
            raise

    def _check_latency(self, new: ActiveModel) -> float | None:
        serving = self.host.serving
        policy = self.host.update_policy
        for _ in range(LATENCY_CONFIRMATIONS):
            old_ms, new_ms = golden_latencies_ms([serving.active, new])
            if not latency_regressed(old_ms, new_ms, policy):
                break
        else:
            raise UpdateRejected(
                f"latency regression: {new_ms:.2f} ms vs {old_ms:.2f} ms on the golden input "
                f"(bound {policy.max_latency_ratio}x and +{policy.min_latency_regression_ms} ms, "
                f"in {LATENCY_CONFIRMATIONS} measurements)")
        # Probation compares live latency with the old model's live latency; without
        # enough live traffic the golden-input comparison above is the latency check.
        recent = list(serving.recent_latency)
        return float(np.median(recent)) if len(recent) >= 10 else None

    def switch(self, new: ActiveModel, probation: bool, cmd_id: str | None = None) -> None:
        """Point the store at ``new`` (atomic) and serve it."""
        self.host.store.switch(new.record, probation=probation, probation_cmd=cmd_id)
        self._serve(new)

    def _serve(self, new: ActiveModel) -> None:
        self.host.serving.swap(new).close()
        release_free_memory()  # the replaced model's and the checks' arrays

    def roll_back(self, reason: str) -> Any:
        """Serve the previous model again, after proving it still loads; report why.

        The previous slot is opened and golden-checked before the pointer moves, so
        a failed rollback leaves the device on the model that is serving now.
        """
        a = self.host
        prev = a.store.previous()
        if prev is None:
            raise EdgekitError("no previous model to roll back to")
        failed = a.serving.active.record.version
        try:
            restored = a.store.open_slot(prev)
        except (EdgekitError, OSError) as exc:
            self._keep_current(f"cannot roll back to v{prev.version} ({exc}); keeping "
                               f"v{failed} although {reason}")
            raise EdgekitError(f"cannot roll back to v{prev.version}: {exc}") from exc
        a.store.rollback(prev)
        self._serve(restored)
        self._final_result(False, f"rolled back to {prev.version}: {reason}",
                           {"phase": "rolled_back", "final": True, "failed_version": failed})
        a.store.gc()
        a.set_status("online", f"rolled back to {prev.version}: {reason}"[:500],
                     {"rolled_back": reason})
        log.warning("rolled back to %s v%s: %s", prev.name, prev.version, reason)
        return prev

    def _keep_current(self, why: str) -> None:
        """Rollback impossible: the serving model stays, out of probation, status degraded."""
        a = self.host
        log.error("%s", why)
        self._final_result(False, why, {"phase": "rollback_failed", "final": True})
        a.store.end_probation()
        a.set_status("degraded", why[:500])

    def _final_result(self, ok: bool, error: str | None, detail: dict[str, Any]) -> None:
        """End a running probation and answer its update command, once."""
        cmd_id = self.host.serving.end_probation()
        if cmd_id is not None:
            self.result(cmd_id, "update", ok, error, detail)

    def check_probation(self) -> None:
        """Called periodically: roll back on a bad verdict, commit once probation passes."""
        with self.lock:
            probation = self.host.serving.probation
            if probation is None:
                return
            verdict = probation.verdict()
            if verdict is None and probation.passed() and probation.count == 0:
                verdict = self._probe(probation)
            if verdict is not None:
                self.roll_back(verdict)
            elif probation.passed():
                a = self.host
                a.store.end_probation()
                a.store.gc()
                self._final_result(True, None, {"phase": "committed", "final": True,
                                                "version": a.serving.active.record.version})

    def _probe(self, probation: Probation) -> str | None:
        """No traffic during probation: judge the model on its golden input instead."""
        active = self.host.serving.active
        m = active.model.manifest
        if m.golden is None:
            return None
        outputs = active.model.session.run(load_arrays(active.bundle.path(m.golden.input_role)))
        if not all(np.isfinite(o.astype(np.float64)).all() for o in outputs):
            return "model produced NaN/inf on its golden input"
        # the task's verdict: detections by the parity rule, other outputs by tolerance
        verdict = active.model.task.golden(
            load_arrays(active.bundle.path(m.golden.output_role)), outputs)
        return None if verdict.ok else f"golden check failed in probation: {verdict.problem()}"


class RollbackRefused(EdgekitError):
    """A rollback names a version this device is not running; nothing was changed."""

    def __init__(self, leave: str, running: str) -> None:
        super().__init__(f"rollback refused: it is to leave version {leave}, but this device "
                         f"runs version {running}; nothing was changed (send a rollback "
                         f"naming {running} to leave it)")
        self.result_detail = {"from_version": leave, "running_version": running}


class CommandExpired(EdgekitError):
    """A command arrived (or was resumed) after its ``expires_at``; it is not run."""


def _expired(cmd: proto.Command) -> str | None:
    """Why ``cmd`` must not run because it is stale, or None."""
    now = time.time()
    if not cmd.expired(now):
        return None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cmd.expires_at))
    return (f"command expired at {when} ({now - cmd.expires_at:.0f} s ago) and was not run; "
            "send a new command if it is still wanted")


def command_ids(payload: bytes) -> tuple:
    """Best-effort cmd_id and type of a payload that may not parse."""
    try:
        doc = json.loads(payload.decode("utf-8"))
        if isinstance(doc, dict):
            return str(doc.get("cmd_id", "unknown"))[:64], str(doc.get("type", "unknown"))[:32]
    except (UnicodeDecodeError, ValueError):
        pass
    return "unknown", "unknown"
