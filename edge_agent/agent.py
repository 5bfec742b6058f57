"""The edge agent: serves the current model, reports telemetry, obeys commands, updates safely.

One ``Agent`` object is both the embedding API (``Agent.predict``) and the
daemon behind ``edgekit agent run`` (``start``/``stop``). What is served (model,
metrics, sampler, probation, runtime settings) is owned by one
:class:`edge_agent.serving.Serving`; commands reach it through a narrow interface
(:class:`edge_agent.commands.CommandHost`). Threads: the MQTT link (drains the
outbox), a telemetry ticker, a command worker (updates run there, never on the
MQTT thread), a probation watcher, and the optional HTTP server.

Status messages (retained, ``.../status``) are ordered by ``seq``. Each MQTT
connection reserves a block of ``STATUS_BLOCK`` status seqs: the statuses sent on
that connection count up from the block's start, and the last will registered
with the broker for that connection takes the block's last number. So a will the
broker publishes after a crash sorts after every status of its connection and
before every status of the next one. ``reason`` tells a crash (``connection_lost``,
from the will) from a clean stop (``stopped``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_agent import __version__
from edge_agent import protocol as proto
from edge_agent.bundle.signing import trusted_keys
from edge_agent.bundle.versions import is_newer
from edge_agent.command_journal import CommandJournal
from edge_agent.commands import CommandHandler, command_ids
from edge_agent.config import AgentConfig
from edge_agent.contracts.telemetry import ModelState, OutboxFigures, SystemFigures
from edge_agent.errors import EdgekitError, first_line
from edge_agent.inputs import InputError, check_input, ensure_finite
from edge_agent.memory import release_free_memory
from edge_agent.metrics import ModelMetrics
from edge_agent.outbox import Outbox
from edge_agent.probation import Probation
from edge_agent.sampling import Sampler, encode_input
from edge_agent.serving import RuntimeSettings, Serving, load_overrides
from edge_agent.slots import ActiveModel, ModelStore
from edge_agent.system_stats import SystemStats
from edge_agent.tasks.options import PredictOptions
from edge_agent.tasks.plugin import Inspection, TaskPlugin

if TYPE_CHECKING:
    from edge_agent.mqtt_link import MqttLink

log = logging.getLogger(__name__)

__all__ = ["Agent", "InputError", "check_input"]

STATUS_BLOCK = 1 << 20  # status seqs reserved per MQTT connection (see the module docstring)
CONNECTION_LOST = "connection_lost"
NO_OPTIONS = PredictOptions()


class Agent:
    """The on-device agent. ``Agent(cfg)`` loads the model; ``start()`` brings up the rest."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.device_id = cfg.device_id
        self.state_dir = Path(cfg.state_dir)
        self.update_policy = cfg.update
        self.store = ModelStore(self.state_dir, trusted_keys(cfg.pubkeys))
        self.outbox = Outbox(self.state_dir / "outbox.sqlite", cfg.outbox_max_bytes,
                             cfg.outbox_max_age_s)
        self.journal = CommandJournal(self.outbox)
        self._install_initial_bundle()
        settings = RuntimeSettings.from_config(cfg).changed(load_overrides(self.state_dir))
        self.serving = Serving(self.store.load_best(), settings, self.state_dir,
                               self._new_metrics, self._new_sampler)
        release_free_memory()  # the verification's and golden check's arrays
        self.profile = cfg.profile or self.active.bundle.manifest.profile
        self.system = SystemStats(str(self.state_dir))
        self.commands = CommandHandler(self)
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.link: MqttLink | None = None
        self.http = None
        self._status: tuple[str, str, dict[str, Any]] = ("online", "", {})
        self._status_seqs = (0, 0)  # (next, last) of this connection's status block
        self._status_before_refusal: tuple[str, str, dict[str, Any]] | None = None
        self._status_lock = threading.Lock()
        self.total_inferences = 0
        self.total_errors = 0
        self._resume_probation()
        self.store.gc()  # slots staged by an update that was killed before its switch

    # the serving state, read-only views -------------------------------------------
    @property
    def active(self) -> ActiveModel:
        """The model being served."""
        return self.serving.active

    @property
    def metrics(self) -> ModelMetrics:
        """The current telemetry window's figures."""
        return self.serving.metrics

    @property
    def sampler(self) -> Sampler:
        """Chooses inputs to send home for retraining."""
        return self.serving.sampler

    @property
    def probation(self) -> Probation | None:
        """The running probation of a freshly switched model, if any."""
        return self.serving.probation

    # setup -------------------------------------------------------------------
    def _install_initial_bundle(self) -> None:
        if not self.cfg.bundle:
            return
        current = self.store.current()
        if current is not None:
            from edge_agent.bundle.reader import read_manifest_unverified

            try:
                offered = read_manifest_unverified(Path(self.cfg.bundle)).model.version
                if not is_newer(offered, current.version):
                    return
                record = self.store.stage(Path(self.cfg.bundle))
            except (EdgekitError, OSError) as exc:  # keep serving what is installed
                log.warning("ignoring --bundle %s: %s", self.cfg.bundle, exc)
                return
        else:
            record = self.store.stage(Path(self.cfg.bundle))
        self.store.switch(record, probation=False)
        self.store.gc()

    def _new_metrics(self, active: ActiveModel) -> ModelMetrics:
        task = active.model.task
        return ModelMetrics(active.bundle.manifest.reference_stats, classify=task.classifies,
                            task_counter=task.new_counter())

    def _new_sampler(self, active: ActiveModel, settings: RuntimeSettings) -> Sampler:
        return Sampler(settings.sample_rate_per_min, settings.sample_max_bytes,
                       settings.low_confidence, active.bundle.manifest.reference_stats.input_range)

    def _resume_probation(self) -> None:
        if not self.store.in_probation():
            return
        self.serving.begin_probation(Probation(self.update_policy, None),
                                     self.store.probation_cmd())
        if self.store.note_probation_boot() >= 3:
            log.error("model restarted 3 times in probation; rolling back")
            try:
                self.commands.roll_back("the agent restarted 3 times during probation")
            except EdgekitError as exc:  # the previous model does not load: keep this one
                log.error("rollback failed: %s", exc)

    # inference ---------------------------------------------------------------
    def predict(self, *inputs: Any, **options: Any) -> Any:
        """Run the current model on float inputs and answer as its task does.

        A classifier answers its float32 output arrays (as it always did); a detector
        ``{"detections": [...]}`` (one image) or ``{"images": [{"detections": [...]}, ...]}``
        (a batch); a generic model ``{"outputs": {name: array}}``. ``raw=True`` answers the
        raw output arrays of any model. Detectors take ``score_threshold``,
        ``iou_threshold``, ``max_detections`` (default: the manifest's) and ``image_size``
        ([height, width] of the caller's image: boxes in its pixels). InputError on bad
        input or options (see ``edge_agent.tasks.options``).
        """
        serving = self.serving
        active, metrics = serving.active, serving.metrics
        task = active.model.task
        opts = NO_OPTIONS
        if options:  # the common call has none: no parsing on the hot path
            opts = PredictOptions.parse(options)
            opts.check_task(task.kind)
        specs = active.model.manifest.inputs
        if len(inputs) != len(specs):
            raise InputError(f"model takes {len(specs)} input(s), got {len(inputs)}")
        before = self.cfg.finite_check_before_bytes
        arrays = [check_input(x, s.shape, self.cfg.max_input_bytes, finite=False)
                  for x, s in zip(inputs, specs)]
        deferred = [a for a in arrays if a.nbytes > before]
        for a in arrays:
            if a.nbytes <= before:
                ensure_finite(a)
        start = time.perf_counter()
        try:
            outputs = active.model.predict(*arrays)
        except Exception as exc:  # a runtime failure must not take the agent down
            self.total_errors += 1
            metrics.record_error()
            self._observe(None, ok=False)
            raise EdgekitError(f"inference failed: {first_line(exc, 200)}") from exc
        latency = (time.perf_counter() - start) * 1000.0
        post = task.postprocess(outputs)
        finite = None
        if deferred:  # large inputs: read again only to tell a bad input from a bad model
            finite = self._outputs_finite(task, outputs, post)
            if not finite:
                for a in deferred:
                    ensure_finite(a)
        self.total_inferences += 1
        metrics.record(latency, arrays[0], outputs[0])
        if metrics.task_counter is not None:
            task.count(outputs, post, metrics.task_counter)
        if not task.classifies and not (task.finite(outputs, post) if finite is None
                                        else finite):
            metrics.record_non_finite()
        serving.recent_latency.append(latency)
        probation, sampler = serving.probation, serving.sampler
        if probation is not None or sampler.ready():  # per-inference scores only when needed
            self._after_inference(task, metrics, probation, sampler, arrays[0], outputs, post,
                                  latency)
        return outputs if opts.raw else task.answer(outputs, post, opts)

    @staticmethod
    def _outputs_finite(task: TaskPlugin, outputs: list[np.ndarray], post: Any) -> bool:
        if task.classifies:
            return all(bool(np.isfinite(o).all()) for o in outputs)
        return task.finite(outputs, post)

    def _after_inference(self, task: TaskPlugin, metrics: ModelMetrics,
                         probation: Probation | None, sampler: Sampler, x: np.ndarray,
                         outputs: list[np.ndarray], post: Any, latency: float) -> None:
        seen = task.inspect(outputs, post, metrics)
        if probation is not None:
            probation.observe(latency, ok=True, finite=seen.finite)
        if seen.confidence.size and sampler.bucket.ready():
            try:
                self._maybe_sample(sampler, x, seen)
            except Exception:  # a sample that cannot be queued must not fail the inference
                log.exception("could not queue a sample")

    def _observe(self, latency: float | None, ok: bool, finite: bool = True) -> None:
        probation = self.serving.probation
        if probation is not None:
            probation.observe(latency, ok, finite)

    def _maybe_sample(self, sampler: Sampler, x: np.ndarray, seen: Inspection) -> None:
        i = int(seen.confidence.argmin())
        reason = sampler.select(x[i:i + 1], float(seen.confidence[i]))
        if reason is None:
            return
        model = self.model_info()
        block = encode_input(x[i:i + 1])
        fields = seen.describe(i)
        self.publish(proto.SAMPLES, lambda seq: proto.Sample(
            device_id=self.cfg.device_id, seq=seq, ts=time.time(), model=model, reason=reason,
            input=block, incarnation=self.outbox.incarnation, **fields).to_json())

    def model_info(self) -> dict[str, Any]:
        """Name and version of the model being served."""
        m = self.active.bundle.manifest
        return {"name": m.model.name, "version": m.model.version}

    # messages ----------------------------------------------------------------
    def topic(self, kind: str) -> str:
        """This device's topic of one kind."""
        return proto.topic(self.cfg.fleet, self.cfg.device_id, kind)

    def publish(self, kind: str, build: Callable[[int], bytes]) -> int:
        """Queue a message durably in the outbox; the link sends it when it can."""
        return self.outbox.put(kind, self.topic(kind), build)

    def _status_message(self, seq: int, state: str, reason: str,
                        detail: dict[str, Any]) -> bytes:
        return proto.Status(device_id=self.cfg.device_id, seq=seq, ts=time.time(), state=state,
                            reason=reason, model=self.model_info(), agent_version=__version__,
                            profile=self.profile, detail=detail,
                            incarnation=self.outbox.incarnation).to_json()

    def _next_status_seq(self) -> int:
        """The next seq of this connection's status block (a fresh block if it ran out)."""
        with self._status_lock:
            seq, last = self._status_seqs
            if seq == 0 or seq >= last:  # no connection yet, or the block is used up
                seq = self.outbox.allocate_seq("status")
                self._status_seqs = (seq + 1, seq + 1)
                return seq
            self._status_seqs = (seq + 1, last)
            return seq

    def status_payload(self, state: str, reason: str = "",
                       detail: dict[str, Any] | None = None) -> bytes:
        """A retained status message with the next status seq of this connection."""
        return self._status_message(self._next_status_seq(), state, reason, detail or {})

    def will_payload(self) -> bytes:
        """The last will for a new connection: reserves the connection's status block."""
        first = self.outbox.allocate_seq_block("status", STATUS_BLOCK)
        last = first + STATUS_BLOCK - 1
        with self._status_lock:
            self._status_seqs = (first, last)
        return self._status_message(last, "offline", CONNECTION_LOST,
                                    {"last_will": True})

    def set_status(self, state: str, reason: str = "",
                   detail: dict[str, Any] | None = None) -> None:
        """Publish the retained status now, if connected (it is republished on reconnect)."""
        self._status = (state, reason, detail or {})
        if self.link is not None and self.link.connected:
            self.link.publish_direct(self.topic(proto.STATUS),
                                     self.status_payload(state, reason, detail), retain=True)

    def telemetry_tick(self) -> int:
        """Close the metrics window and queue one telemetry message; returns its seq."""
        window = self.metrics.close_window()
        stats = self.outbox.stats()
        system = self.system.read()  # outside build(): the outbox holds its write lock there
        model = ModelState(**self.model_info(), non_finite=window.non_finite,
                           probation=self.probation is not None)
        outbox = OutboxFigures(queued=stats.queued, queued_bytes=stats.queued_bytes,
                               dropped=stats.dropped, dropped_bytes=stats.dropped_bytes)
        return self.publish(proto.TELEMETRY, lambda seq: proto.Telemetry(
            device_id=self.cfg.device_id, seq=seq, ts=time.time(), model=model,
            window_s=window.seconds, inferences=window.inferences, errors=window.errors,
            latency_ms=window.latency_ms, confidence=window.confidence,
            class_counts=window.class_counts, input_hist=window.input_hist,
            detection=window.detection, values=window.values, outbox=outbox,
            system=SystemFigures(**system),
            incarnation=self.outbox.incarnation).to_json())

    def on_message(self, topic: str, payload: bytes) -> None:
        """MQTT callback: journal a command (the link acknowledges it after this returns).

        Runs on the link's callback thread, never the network thread; the command itself
        runs on the command worker.
        """
        if not self.commands.receive(payload):
            return  # a repeat, or answered at once
        try:
            self._queue.put_nowait(payload)
        except queue.Full:  # journaled: the worker's idle sweep runs it
            cmd_id, ctype = command_ids(payload)
            log.warning("command queue full; %s (%s) waits in the journal", cmd_id, ctype)

    def on_subscribe_refused(self, reasons: list[str]) -> None:
        """The broker refused the cmd subscription: say so instead of running deaf."""
        why = (f"the broker refused the subscription to {self.topic(proto.CMD)} "
               f"({', '.join(reasons)}); this device cannot receive commands: allow it to "
               "read its own cmd topic in the broker's ACL")
        log.error("%s", why)
        if self._status_before_refusal is None:
            self._status_before_refusal = self._status
        self.set_status("degraded", why[:500])

    # lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start the HTTP API, connect, and start the telemetry, command and probation
        threads. HTTP comes first: an address that cannot be served (a port in use) is a
        ConfigError before the device announces itself online or starts anything."""
        if self.cfg.http:
            from edge_agent.http_api import serve

            self.http = serve(self, self.cfg.http)
        if self.cfg.broker:
            self.link = self._make_link()
            self.link.start()
        self._spawn("telemetry", self._telemetry_loop)
        self._spawn("commands", self._command_loop)
        self._spawn("probation", self._probation_loop)

    def _make_link(self) -> MqttLink:
        from edge_agent.mqtt_link import BrokerConfig, MqttLink

        broker = BrokerConfig.from_url(self.cfg.broker, username=self.cfg.username,
                                       password=self.cfg.password, tls_ca=self.cfg.tls_ca,
                                       tls_cert=self.cfg.tls_cert, tls_key=self.cfg.tls_key)
        return MqttLink(broker, client_id=f"edgekit-{self.cfg.fleet}-{self.cfg.device_id}",
                        outbox=self.outbox, will_topic=self.topic(proto.STATUS),
                        will_payload=self.will_payload, subscriptions=[self.topic(proto.CMD)],
                        on_message=self.on_message, on_connect=self._on_connect,
                        on_subscribe_refused=self.on_subscribe_refused,
                        max_inflight=self.cfg.max_inflight)

    def _on_connect(self) -> None:
        if self._status_before_refusal is not None:  # the broker is asked again: assume it agrees
            self._status, self._status_before_refusal = self._status_before_refusal, None
        state, reason, detail = self._status
        self.link.publish_direct(self.topic(proto.STATUS),
                                 self.status_payload(state, reason, detail), retain=True)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"edgekit-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _telemetry_loop(self) -> None:
        while not self._stop.wait(min(max(self.serving.settings.telemetry_interval_s, 0.1),
                                      86400.0)):
            try:
                self.telemetry_tick()
            except Exception:  # never let one bad window stop telemetry
                log.exception("telemetry tick failed")

    def _command_loop(self) -> None:
        idle = 0
        self.commands.resume()  # journaled before a restart, not answered yet
        while not self._stop.is_set():
            try:
                payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                idle += 1
                if idle % 10 == 0:  # every 5 idle seconds: commands the full queue turned away
                    self._sweep_journal()
                continue
            try:
                self.commands.execute(payload)
            except Exception:  # execute() answers every error itself; this is the last guard
                log.exception("command handling failed")

    def _sweep_journal(self) -> None:
        try:
            self.commands.resume()
        except Exception:  # the journal is unreadable now; the next sweep tries again
            log.exception("command journal sweep failed")

    def _probation_loop(self) -> None:
        while not self._stop.wait(0.2):
            if self.serving.probation is None:
                continue
            try:
                self.commands.check_probation()
            except Exception:
                log.exception("probation check failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop threads, flush what the link can send in ``timeout``, close everything."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.link is not None:
            if self.link.connected:  # a clean stop says so itself; the will covers a crash
                self.link.wait_drained(timeout)
                self.link.publish_direct(self.topic(proto.STATUS),
                                         self.status_payload("offline", "stopped"),
                                         retain=True, timeout=min(timeout, 2.0))
            self.link.stop(timeout)
        self.outbox.close()
        self.active.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
