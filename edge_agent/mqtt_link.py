"""The agent's MQTT link: drains the durable outbox to the broker and delivers commands.

MQTT v5 through paho-mqtt 2.x, QoS 1 throughout.

* **At-least-once, in order.** Outbox rows go out oldest first, at most
  ``max_inflight`` unacknowledged (and never more than the broker's Receive
  Maximum); a row is deleted only when its PUBACK arrives. After a disconnect the
  link starts again from the oldest stored row: a message may arrive twice, always
  with the same bytes (so the same ``seq``), and none is lost. paho's in-memory
  queue is never relied on: each connection gets a fresh paho client, which
  publishes only while connected and under the window.
* **A PUBACK with an error reason code** (>= 0x80, e.g. not authorized) means the
  broker will never take that message: it is deleted so it cannot block the queue,
  counted in ``stats()['refused']`` and logged.
* **Persistent session**: ``clean_start=False`` with a session expiry, so the broker
  keeps the ``cmd`` subscription (and queues commands) while the device is offline.
  The broker publishes the last will (QoS 1, retained) when the connection dies
  without a clean DISCONNECT; :meth:`MqttLink.stop` disconnects cleanly, so the
  agent publishes its own final status first.
* **One thread owns the connection** and, in :meth:`MqttLink._run`, reconnects with
  capped exponential backoff and jitter. User callbacks run in order on a second
  thread, so a slow or failing callback never stalls or kills the link (exceptions
  are logged and counted in ``stats()['callback_errors']``).
* **Commands are acknowledged only after they are safe.** The client runs with MQTT v5
  manual acknowledgement: an incoming QoS 1 message is PUBACKed only after
  ``on_message`` returned (the agent journals the command to disk there). If the
  callback fails, or the connection drops first, no PUBACK is sent and the broker
  delivers the message again on the next connection.
* **A refused subscription is reported**, not ignored: a SUBACK with an error reason
  code (e.g. not authorized by the broker's ACL) calls ``on_subscribe_refused``.
* **A fresh last will per connection**: ``will_payload`` may be a function, called
  for each new connection, so the will carries a current ``seq``.
* **A timeout on every wait**: connect and CONNACK (``connect_timeout_s``), keepalive
  (paho drops a connection whose PINGRESP does not come), direct publishes, stop.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.broker_config import BrokerConfig, is_int
from edge_agent.contracts.vocab import QOS
from edge_agent.errors import ConfigError, EdgekitError
from edge_agent.outbox import Outbox

log = logging.getLogger(__name__)

LOOP_WAIT_S = 0.05  # longest the link sleeps in select() before looking at the outbox again
_OK = MQTTErrorCode.MQTT_ERR_SUCCESS


class LinkError(EdgekitError):
    """The broker could not be reached, refused the connection, or the connection broke."""


def backoff_delay(attempt: int, low: float, high: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: between half and all of min(high, low * 2**n)."""
    ceiling = min(high, low * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rand())


class _Direct:
    """One publish_direct request, handed from the caller's thread to the link thread."""

    def __init__(self, topic: str, payload: bytes, retain: bool) -> None:
        self.topic, self.payload, self.retain = topic, payload, retain
        self.done = threading.Event()
        self.ok = False
        self.abandoned = False

    def finish(self, ok: bool) -> None:
        self.ok = ok
        self.done.set()


class _Dispatcher:
    """Runs user callbacks, in order, on their own thread; exceptions are logged and counted."""

    def __init__(self, name: str, on_error: Callable[[], None]) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        self._queue.put((fn, args))

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:  # a user callback must never end the link
                log.exception("MQTT callback %s failed", getattr(fn, "__name__", fn))
                self._on_error()


_STAT_NAMES = ("connects", "disconnects", "published", "acked", "refused", "max_inflight_seen",
               "direct_published", "messages_received", "callback_errors", "subscribe_refused")


class MqttLink:
    """The device's connection to the broker; see the module docstring for its guarantees."""

    def __init__(self, cfg: BrokerConfig, client_id: str, outbox: Outbox, will_topic: str,
                 will_payload: bytes | Callable[[], bytes], subscriptions: list[str],
                 on_message: Callable[[str, bytes], None],
                 on_connect: Callable[[], None] | None = None, max_inflight: int = 32,
                 on_subscribe_refused: Callable[[list[str]], None] | None = None) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError("the MQTT client id must be a non-empty string")
        if not is_int(max_inflight) or not 1 <= max_inflight <= 65535:
            raise ConfigError(f"max_inflight is {max_inflight!r}; it must be 1..65535")
        self.cfg, self.client_id, self.outbox = cfg, client_id, outbox
        self.will_topic, self.will_payload = will_topic, will_payload
        self.subscriptions = list(subscriptions)
        self.on_message, self.on_connect = on_message, on_connect
        self.on_subscribe_refused = on_subscribe_refused
        self.max_inflight = max_inflight
        self._ssl = cfg.ssl_context()  # TLS mistakes surface here, once, as ConfigError
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatcher = _Dispatcher(f"edgekit-mqtt-callbacks-{client_id}",
                                       lambda: self._count("callback_errors"))
        self._direct: queue.Queue = queue.Queue()
        self._acks: queue.Queue = queue.Queue()  # (connection number, mid) to PUBACK
        self._generation = 0  # connection number, so an ack never goes to a later connection
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(_STAT_NAMES, 0)
        self._connected = False
        # Per-connection state, touched only by the link thread:
        self._client: mqtt.Client | None = None
        self._connack: tuple[object, object] | None = None
        self._lost: str | None = None
        self._rows_inflight: dict[int, int] = {}  # mid -> outbox row id
        self._direct_inflight: dict[int, _Direct] = {}  # mid -> request
        self._acked: list[int] = []
        self._cursor = 0  # highest row id published on this connection
        self._window = max_inflight

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the link and callback threads; returns at once (connecting happens there)."""
        if self._thread is not None:
            raise LinkError("the MQTT link was already started; make a new MqttLink")
        self._thread = threading.Thread(target=self._run, name=f"edgekit-mqtt-{self.client_id}",
                                        daemon=True)
        self._dispatcher.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (no last will) and end the threads, waiting at most ``timeout``.

        Callbacks already handed over finish first, so the messages they took are
        acknowledged before the connection closes (else the broker would resend them).
        """
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._dispatcher.stop(timeout / 2)
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and it has not broken since."""
        return self._connected

    def publish_direct(self, topic: str, payload: bytes, retain: bool = False,
                       timeout: float = 5.0) -> bool:
        """Best-effort QoS 1 publish outside the outbox; True once the broker acknowledged it.

        False when not connected, refused, or not acknowledged within ``timeout``.
        Call it from any thread but the link thread (callbacks run elsewhere).
        """
        if threading.current_thread() is self._thread:
            raise LinkError("publish_direct cannot wait on the link thread itself")
        if not self._connected:
            return False
        request = _Direct(topic, bytes(payload), retain)
        self._direct.put(request)
        if not request.done.wait(timeout):
            request.abandoned = True
            return False
        return request.ok

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty; True if it is, False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.outbox.stats().queued > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stats(self) -> dict[str, int]:
        """Counters: connects, disconnects, published, acked, refused, inflight (now),
        max_inflight_seen, direct_published, messages_received, callback_errors."""
        with self._stats_lock:
            return dict(self._stats, inflight=self._inflight())

    # -- the link thread -------------------------------------------------------------------

    def _run(self) -> None:
        """The reconnect loop: connect, serve until the connection ends, back off, repeat."""
        attempt = 0
        while not self._stop.is_set():
            try:
                self._connect()
                attempt = 0
                self._serve()
            except LinkError as exc:
                log.warning("MQTT link %s: %s", self.client_id, exc)
            except Exception:  # a bug or a disk error must not end the link for good
                log.exception("MQTT link %s failed; reconnecting", self.client_id)
            finally:
                self._close_connection()
            if not self._stop.is_set():
                delay = backoff_delay(attempt, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
                attempt += 1
                log.info("MQTT link %s: reconnecting in %.1f s", self.client_id, delay)
                self._stop.wait(delay)

    def _connect(self) -> None:
        """Open the socket, send CONNECT and wait (bounded) for a successful CONNACK."""
        cfg = self.cfg
        self._generation += 1
        client = self._client = self._new_client()
        self._connack, self._lost = None, None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        try:
            client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False,
                           properties=props)
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, TLS failure
            raise LinkError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from exc
        deadline = time.monotonic() + cfg.connect_timeout_s
        while self._connack is None:
            if time.monotonic() >= deadline:
                raise LinkError(f"no CONNACK from {cfg.host}:{cfg.port} within "
                                f"{cfg.connect_timeout_s} s")
            rc = client.loop(LOOP_WAIT_S)
            if rc != _OK and self._connack is None:
                hint = "; check that it accepts this client's certificate" if self._ssl else ""
                raise LinkError(f"{cfg.host}:{cfg.port} closed the connection before CONNACK: "
                                f"{mqtt.error_string(rc)}{hint}")
        reason, props = self._connack
        if getattr(reason, "is_failure", False):
            raise LinkError(f"{cfg.host}:{cfg.port} refused the connection: {reason}")
        self._connected_as(props)

    def _connected_as(self, props: object) -> None:
        """Set up a fresh connection: window, cursor, subscriptions, on_connect."""
        receive_maximum = getattr(props, "ReceiveMaximum", 65535)
        self._window = max(1, min(self.max_inflight, receive_maximum))
        self._cursor = 0
        if self.subscriptions:
            self._client.subscribe([(topic, QOS) for topic in self.subscriptions])
        self._connected = True
        self._count("connects")
        log.info("MQTT link %s connected to %s:%s", self.client_id, self.cfg.host, self.cfg.port)
        if self.on_connect is not None:
            self._dispatcher.submit(self.on_connect)

    def _serve(self) -> None:
        """Publish within the in-flight window and process acks until the connection ends."""
        client = self._client
        while not self._stop.is_set():
            self._send_acks()
            self._send_direct()
            self._fill_window()
            rc = client.loop(LOOP_WAIT_S)
            self._flush_acks()
            if rc != _OK or self._lost is not None:
                raise LinkError(f"connection to {self.cfg.host}:{self.cfg.port} lost: "
                                f"{self._lost or mqtt.error_string(rc)}")
        self._send_acks()  # what the callbacks finished is acknowledged before we go
        client.disconnect()  # clean: the broker discards the last will, keeps the session

    def _fill_window(self) -> None:
        """Publish the next outbox rows, in order, while the in-flight window has room."""
        free = self._window - self._inflight()
        if free <= 0:
            return
        rows = self.outbox.pending(free, after_id=self._cursor)
        for row in rows:
            info = self._client.publish(row.topic, row.payload, qos=QOS, retain=row.retain)
            if info.rc != _OK:
                raise LinkError(f"publish of outbox row {row.id} failed: "
                                f"{mqtt.error_string(info.rc)}")
            self._rows_inflight[info.mid] = row.id
            self._cursor = row.id
        if rows:
            self._note_published("published", len(rows))

    def _send_acks(self) -> None:
        """PUBACK the messages whose callback has finished, if still on their connection."""
        while True:
            try:
                generation, mid = self._acks.get_nowait()
            except queue.Empty:
                return
            if generation == self._generation and self._client is not None:
                self._client.ack(mid, QOS)

    def _send_direct(self) -> None:
        """Publish waiting publish_direct requests (they go first) while the window has room."""
        while self._inflight() < self._window:
            try:
                request = self._direct.get_nowait()
            except queue.Empty:
                return
            if request.abandoned:
                continue
            info = self._client.publish(request.topic, request.payload, qos=QOS,
                                        retain=request.retain)
            if info.rc != _OK:
                request.finish(False)
                raise LinkError(f"direct publish failed: {mqtt.error_string(info.rc)}")
            self._direct_inflight[info.mid] = request
            self._note_published("direct_published", 1)

    def _flush_acks(self) -> None:
        """Delete the acknowledged rows from the outbox, in one transaction."""
        if self._acked:
            acked, self._acked = self._acked, []
            self.outbox.ack_many(acked)
            self._count("acked", len(acked))

    def _close_connection(self) -> None:
        """Forget this connection: flush acks, fail waiting direct publishes, close sockets."""
        if self._connected and not self._stop.is_set():
            self._count("disconnects")
        self._connected = False
        try:
            self._flush_acks()
        finally:
            self._acked = []
            for request in list(self._direct_inflight.values()):
                request.finish(False)
            self._direct_inflight.clear()
            self._rows_inflight.clear()
            client, self._client = self._client, None
            if client is not None:
                _discard(client)

    # -- paho callbacks (run inside client.loop, on the link thread) -------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = (reason_code, properties)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._lost = str(reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        refused = getattr(reason_code, "is_failure", False)
        if refused:
            self._count("refused")
            log.warning("broker refused a message (mid %s): %s; it is dropped", mid, reason_code)
        if mid in self._rows_inflight:
            self._acked.append(self._rows_inflight.pop(mid))
        elif mid in self._direct_inflight:
            self._direct_inflight.pop(mid).finish(not refused)

    def _on_message(self, client, userdata, message) -> None:
        self._count("messages_received")
        self._dispatcher.submit(self._deliver, message.topic, bytes(message.payload),
                                message.mid, message.qos, self._generation)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
        if refused:
            self._count("subscribe_refused")
            log.error("MQTT link %s: broker refused a subscription: %s", self.client_id,
                      ", ".join(refused))
            if self.on_subscribe_refused is not None:
                self._dispatcher.submit(self.on_subscribe_refused, refused)

    # -- the callback thread ---------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes, mid: int, qos: int, generation: int) -> None:
        """Hand a message to ``on_message``; acknowledge it only once that returned."""
        self.on_message(topic, payload)  # raises: no PUBACK, the broker sends it again
        if qos > 0:
            self._acks.put((generation, mid))

    # -- helpers ---------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        """A fresh paho client for one connection (no state carried from the last one)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False, manual_ack=True)
        client.connect_timeout = self.cfg.connect_timeout_s
        client.max_inflight_messages_set(self.max_inflight)  # backs up our own window
        client.max_queued_messages_set(self.max_inflight)
        will = self.will_payload() if callable(self.will_payload) else self.will_payload
        client.will_set(self.will_topic, will, qos=QOS, retain=True)
        if self.cfg.username is not None:
            client.username_pw_set(self.cfg.username, self.cfg.password)
        if self._ssl is not None:
            client.tls_set_context(self._ssl)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_publish, client.on_message = self._on_publish, self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _inflight(self) -> int:
        return len(self._rows_inflight) + len(self._direct_inflight)

    def _note_published(self, name: str, count: int) -> None:
        with self._stats_lock:
            self._stats[name] += count
            self._stats["max_inflight_seen"] = max(self._stats["max_inflight_seen"],
                                                   self._inflight())

    def _count(self, name: str, count: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += count


def _discard(client: mqtt.Client) -> None:
    """Close a finished client's socket and its wake-up socket pair right away."""
    with contextlib.suppress(Exception):  # already closed: nothing to say
        client.disconnect()
    reset = getattr(client, "_reset_sockets", None)  # paho has no public "close everything"
    if reset is not None:
        reset()
