"""The edge agent: serves the current model, reports telemetry, obeys commands, updates safely.

One ``Agent`` object is both the embedding API (``Agent.predict``) and the
daemon behind ``edgekit agent run`` (``start``/``stop``). Threads: the MQTT link
(drains the outbox), a telemetry ticker, a command worker (updates run there,
never on the MQTT thread), a probation watcher, and the optional HTTP server.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_agent import __version__
from edge_agent import protocol as proto
from edge_agent.bundle.signing import trusted_keys
from edge_agent.bundle.versions import is_newer
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.errors import EdgekitError, first_line
from edge_agent.metrics import ModelMetrics
from edge_agent.outbox import Outbox
from edge_agent.probation import Probation
from edge_agent.sampling import Sampler, encode_input
from edge_agent.slots import ActiveModel, ModelStore
from edge_agent.system_stats import SystemStats

if TYPE_CHECKING:
    from edge_agent.mqtt_link import MqttLink

log = logging.getLogger(__name__)


class InputError(EdgekitError):
    """An input does not fit the model (shape, dtype, size); the agent keeps running."""


def check_input(x: Any, spec_shape: list[int | None], max_bytes: int) -> np.ndarray:
    """``x`` as a float32 array that fits the model's declared shape, or InputError."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input is not a numeric array: {exc}") from exc
    if arr.nbytes > max_bytes:
        raise InputError(f"input is {arr.nbytes} bytes; the limit is {max_bytes}")
    if arr.ndim == len(spec_shape) - 1:
        arr = arr[None, ...]  # a single example without its batch dimension
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise InputError("input holds no example (empty batch)")
    if arr.ndim != len(spec_shape) or any(
            d is not None and i > 0 and d != n for i, (d, n) in enumerate(zip(spec_shape,
                                                                               arr.shape))):
        raise InputError(f"input shape {list(arr.shape)} does not fit the model's {spec_shape}")
    if not np.isfinite(arr).all():
        raise InputError("input contains NaN or inf")
    return arr


class Agent:
    """The on-device agent. ``Agent(cfg)`` loads the model; ``start()`` brings up the rest."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir)
        self.store = ModelStore(self.state_dir, trusted_keys(cfg.pubkeys))
        self.outbox = Outbox(self.state_dir / "outbox.sqlite", cfg.outbox_max_bytes,
                             cfg.outbox_max_age_s)
        self._install_initial_bundle()
        self._swap_lock = threading.RLock()
        self.active: ActiveModel = self.store.load_best()
        self.profile = cfg.profile or self.active.bundle.manifest.profile
        self.metrics = self._new_metrics()
        self.sampler = self._new_sampler()
        self.system = SystemStats(str(self.state_dir))
        self.recent_latency: deque[float] = deque(maxlen=500)
        self.probation: Probation | None = None
        self.probation_cmd: str | None = None
        self.commands = CommandHandler(self)
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.link: MqttLink | None = None
        self.http = None
        self._status: tuple = ("online", {})
        self.total_inferences = 0
        self.total_errors = 0
        self._resume_probation()
        self.store.gc()  # slots staged by an update that was killed before its switch

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

    def _new_metrics(self) -> ModelMetrics:
        return ModelMetrics(self.active.bundle.manifest.reference_stats)

    def _new_sampler(self) -> Sampler:
        rng = (self.active.bundle.manifest.reference_stats.get("input") or {}).get("range")
        return Sampler(self.cfg.sample_rate_per_min, self.cfg.sample_max_bytes,
                       self.cfg.low_confidence, tuple(rng) if rng else None)

    def _resume_probation(self) -> None:
        if not self.store.in_probation():
            return
        self.probation = Probation(self.cfg.update, None)
        self.probation_cmd = self.store.probation_cmd()
        if self.store.note_probation_boot() >= 3:
            log.error("model restarted 3 times in probation; rolling back")
            try:
                self.commands.roll_back("the agent restarted 3 times during probation")
            except EdgekitError as exc:  # the previous model does not load: keep this one
                log.error("rollback failed: %s", exc)

    # inference ---------------------------------------------------------------
    def predict(self, *inputs: Any) -> list[np.ndarray]:
        """Run the current model on float inputs; float32 outputs. InputError on bad input."""
        active = self.active
        specs = active.model.manifest.inputs
        if len(inputs) != len(specs):
            raise InputError(f"model takes {len(specs)} input(s), got {len(inputs)}")
        arrays = [check_input(x, s.shape, self.cfg.max_input_bytes)
                  for x, s in zip(inputs, specs)]
        start = time.perf_counter()
        try:
            outputs = active.model.predict(*arrays)
        except Exception as exc:  # a runtime failure must not take the agent down
            self.total_errors += 1
            self.metrics.record_error()
            self._observe(None, ok=False)
            raise EdgekitError(f"inference failed: {first_line(exc, 200)}") from exc
        latency = (time.perf_counter() - start) * 1000.0
        self.total_inferences += 1
        classes, conf = self.metrics.record(latency, arrays[0], outputs[0])
        self.recent_latency.append(latency)
        self._observe(latency, ok=True, finite=len(classes) > 0 or outputs[0].size == 0)
        if conf.size:
            try:
                self._maybe_sample(arrays[0], classes, conf)
            except Exception:  # a sample that cannot be queued must not fail the inference
                log.exception("could not queue a sample")
        return outputs

    def _observe(self, latency: float | None, ok: bool, finite: bool = True) -> None:
        probation = self.probation
        if probation is not None:
            probation.observe(latency, ok, finite)

    def _maybe_sample(self, x: np.ndarray, classes: np.ndarray, conf: np.ndarray) -> None:
        i = int(conf.argmin())
        reason = self.sampler.select(x[i:i + 1], float(conf[i]))
        if reason is None:
            return
        model = self.model_info()
        block = encode_input(x[i:i + 1])
        self.publish(proto.SAMPLES, lambda seq: proto.Sample(
            device_id=self.cfg.device_id, seq=seq, ts=time.time(), model=model, reason=reason,
            prediction={"class": int(classes[i]), "confidence": float(conf[i])},
            input=block).to_json())

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

    def status_payload(self, state: str, detail: dict[str, Any] | None = None) -> bytes:
        """A retained status message with a fresh status seq."""
        return proto.Status(device_id=self.cfg.device_id, seq=self.outbox.allocate_seq("status"),
                            ts=time.time(), state=state, model=self.model_info(),
                            agent_version=__version__, detail=detail or {}).to_json()

    def set_status(self, state: str, detail: dict[str, Any] | None = None) -> None:
        """Publish the retained status now, if connected (it is republished on reconnect)."""
        self._status = (state, detail or {})
        if self.link is not None and self.link.connected:
            self.link.publish_direct(self.topic(proto.STATUS), self.status_payload(state, detail),
                                     retain=True)

    def telemetry_tick(self) -> int:
        """Close the metrics window and queue one telemetry message; returns its seq."""
        window = self.metrics.close_window()
        stats = self.outbox.stats()
        system = self.system.read()  # outside build(): the outbox holds its write lock there
        model = dict(self.model_info(), non_finite=window.non_finite,
                     probation=self.probation is not None)
        return self.publish(proto.TELEMETRY, lambda seq: proto.Telemetry(
            device_id=self.cfg.device_id, seq=seq, ts=time.time(), model=model,
            window_s=window.seconds, inferences=window.inferences, errors=window.errors,
            latency_ms=window.latency_ms, confidence=window.confidence,
            class_counts=window.class_counts, input_hist=window.input_hist,
            outbox={"queued": stats.queued, "queued_bytes": stats.queued_bytes,
                    "dropped": stats.dropped, "dropped_bytes": stats.dropped_bytes},
            system=system).to_json())

    def on_message(self, topic: str, payload: bytes) -> None:
        """MQTT callback: queue a command for the worker (never block the network thread)."""
        try:
            self._queue.put_nowait((topic, payload))
        except queue.Full:
            from edge_agent.commands import command_ids

            cmd_id, ctype = command_ids(payload)
            self.commands.result(cmd_id, ctype, False, "agent busy: too many queued commands; "
                                 "retry later", {})

    # lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Connect, and start the telemetry, command, probation and HTTP threads."""
        if self.cfg.broker:
            self.link = self._make_link()
            self.link.start()
        self._spawn("telemetry", self._telemetry_loop)
        self._spawn("commands", self._command_loop)
        self._spawn("probation", self._probation_loop)
        if self.cfg.http:
            from edge_agent.http_api import serve

            self.http = serve(self, self.cfg.http)

    def _make_link(self) -> MqttLink:
        from edge_agent.mqtt_link import BrokerConfig, MqttLink

        broker = BrokerConfig.from_url(self.cfg.broker, username=self.cfg.username,
                                       password=self.cfg.password, tls_ca=self.cfg.tls_ca,
                                       tls_cert=self.cfg.tls_cert, tls_key=self.cfg.tls_key)
        will = proto.Status(device_id=self.cfg.device_id,
                            seq=self.outbox.allocate_seq("status"), ts=time.time(),
                            state="offline", model=self.model_info(),
                            agent_version=__version__).to_json()
        return MqttLink(broker, client_id=f"edgekit-{self.cfg.fleet}-{self.cfg.device_id}",
                        outbox=self.outbox, will_topic=self.topic(proto.STATUS),
                        will_payload=will, subscriptions=[self.topic(proto.CMD)],
                        on_message=self.on_message, on_connect=self._on_connect,
                        max_inflight=self.cfg.max_inflight)

    def _on_connect(self) -> None:
        state, detail = self._status
        self.link.publish_direct(self.topic(proto.STATUS), self.status_payload(state, detail),
                                 retain=True)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"edgekit-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _telemetry_loop(self) -> None:
        while not self._stop.wait(min(max(self.cfg.telemetry_interval_s, 0.1), 86400.0)):
            try:
                self.telemetry_tick()
            except Exception:  # never let one bad window stop telemetry
                log.exception("telemetry tick failed")

    def _command_loop(self) -> None:
        while not self._stop.is_set():
            try:
                _topic, payload = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.commands.handle(payload)
            except Exception:  # handle() answers every error itself; this is the last guard
                log.exception("command handling failed")

    def _probation_loop(self) -> None:
        while not self._stop.wait(0.2):
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
                                         self.status_payload("offline", {"reason": "stopped"}),
                                         retain=True, timeout=min(timeout, 2.0))
            self.link.stop(timeout)
        self.outbox.close()
        self.active.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
