"""The ingest worker's MQTT v5 connection: shared subscriptions, a persistent session,
manual acknowledgement, and the reconnect loop in plain sight.

One thread owns the paho client (``run``): it connects with ``clean_start=False`` and
a stable client id (so the broker keeps the session, its subscriptions and the
messages queued for it across a worker restart), announces a Receive Maximum (the
broker may have that many messages unacknowledged with us; Mosquitto honours it over
its own ``max_inflight_messages``), subscribes to every device kind under
``$share/<group>/...`` and checks the SUBACK. Received messages go to ``on_message``
(the batcher's queue); acknowledgements come back through ``ack`` from any thread and
are sent by the loop thread, only on the connection the message arrived on (after a
reconnect the broker sends unacknowledged messages again).

Two measured speed-ups of paho's receive path (``fast_paths``, on unless
``ingest.fast_paths`` is false): socket reads go through one large buffered read
(``read_buffer``), and MQTT 5 property tables are built once (``lean_properties``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud_sync.config import CloudConfig
from cloud_sync.errors import CloudError
from cloud_sync.ingest import lean_properties, read_buffer
from cloud_sync.ingest.classify import DEVICE_KINDS, Received
from cloud_sync.registry.service import read_service_password
from edge_agent import protocol
from edge_agent.broker_config import BrokerConfig
from edge_agent.errors import ConfigError
from edge_agent.mqtt_link import backoff_delay

log = logging.getLogger(__name__)
LOOP_WAIT_S = 0.02
READ_BURST = 64  # packets read per loop turn when they are already waiting
_OK = MQTTErrorCode.MQTT_ERR_SUCCESS
PASSWORD_ENV = "EDGEKIT_CLOUD_MQTT_PASSWORD"


class IngestMqttError(CloudError):
    """The broker refused our login or subscription: retrying will not help."""


def broker_for(cfg: CloudConfig, env: Mapping[str, str]) -> BrokerConfig:
    """The broker of ``cfg`` with the cloud's service login, unless the URL carries one or
    no service password exists (an anonymous broker)."""
    if not cfg.broker:
        raise ConfigError("no MQTT broker given; pass --broker mqtt://HOST:PORT (or 'broker' "
                          "in the config file)")
    broker = BrokerConfig.from_url(cfg.broker, reconnect_min_s=0.2, reconnect_max_s=5.0)
    if broker.username is None and (env.get(PASSWORD_ENV) or cfg.service_password_file.exists()):
        password = read_service_password(cfg.service_password_file, dict(env))
        broker = dataclasses.replace(broker, username=cfg.service_user, password=password)
    return broker


def shared_topics(group: str) -> list[str]:
    """The shared-subscription filters of every kind devices send."""
    return [f"$share/{group}/{protocol.subscription(kind)}" for kind in DEVICE_KINDS]


class IngestClient:
    """A paho client for one worker slot; ``run`` until ``stop`` is set."""

    def __init__(self, broker: BrokerConfig, client_id: str, group: str, receive_maximum: int,
                 session_expiry_s: int, on_message: Callable[[Received], None],
                 fast_paths: bool = True) -> None:
        self.broker, self.client_id, self.group = broker, client_id, group
        self.fast_paths = fast_paths  # buffered socket reads, paho's tables built once
        if fast_paths:
            lean_properties.install()
        self._buffer: read_buffer.ReadBuffer | None = None
        self.receive_maximum, self.session_expiry_s = receive_maximum, session_expiry_s
        self.on_message = on_message
        self.subscribed = threading.Event()
        self._acks: queue.Queue[tuple[int, int, int]] = queue.Queue()
        self._generation = 0
        self._received = 0  # messages delivered by paho (so a burst read knows it got one)
        self._client: mqtt.Client | None = None
        self._connack: object | None = None
        self._lost: str | None = None
        self._fatal: str | None = None

    def ack(self, items: Iterable[Received]) -> None:
        """Queue PUBACKs for these messages (thread-safe; sent by the loop thread)."""
        for item in items:
            if item.qos > 0:
                self._acks.put((item.generation, item.mid, item.qos))

    def run(self, stop: threading.Event, until: Callable[[], bool] | None = None) -> None:
        """Connect, serve, reconnect with backoff; returns once ``stop`` is set (after
        ``until()`` turns true, if given, so the last acks go out)."""
        attempt = 0
        while not stop.is_set():
            try:
                self._connect()
                attempt = 0
                self._serve(stop, until)
            except OSError as exc:  # broker unreachable or connection dropped
                log.warning("ingest %s: %s", self.client_id, exc)
            finally:
                self._close()
            if stop.is_set():
                return
            delay = backoff_delay(attempt, self.broker.reconnect_min_s, self.broker.reconnect_max_s)
            attempt += 1
            stop.wait(delay)

    def _connect(self) -> None:
        self._generation += 1
        self._connack, self._lost, self._fatal = None, None, None
        self.subscribed.clear()
        client = self._client = self._new_client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        cfg = self.broker
        if self.fast_paths:
            self._buffer = read_buffer.install(client)
        client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
        deadline = time.monotonic() + cfg.connect_timeout_s
        while self._connack is None:
            if client.loop(LOOP_WAIT_S) != _OK or time.monotonic() > deadline:
                raise OSError(f"no CONNACK from {cfg.host}:{cfg.port}")
        if getattr(self._connack, "is_failure", False):
            raise IngestMqttError(f"broker {cfg.host}:{cfg.port} refused ingest client "
                                  f"{self.client_id}: {self._connack}; check the cloud's "
                                  "MQTT user and password")
        client.subscribe([(t, SubscribeOptions(qos=protocol.QOS)) for t in
                          shared_topics(self.group)])
        log.info("ingest %s connected to %s:%s", self.client_id, cfg.host, cfg.port)

    def _serve(self, stop: threading.Event, until: Callable[[], bool] | None) -> None:
        client = self._client
        while not (stop.is_set() and (until is None or until())):
            self._send_acks()
            buffered = self._buffer is not None and self._buffer.pending()
            rc = client.loop(0 if buffered else LOOP_WAIT_S)  # buffered: no wait in select
            if rc == _OK:
                rc = self._read_burst(client)
            if self._fatal:
                raise IngestMqttError(self._fatal)
            if rc != _OK or self._lost is not None:
                raise OSError(f"connection lost: {self._lost or mqtt.error_string(rc)}")
        self._send_acks()
        client.loop(LOOP_WAIT_S)
        client.disconnect()  # the session (subscriptions, queued messages) stays

    def _read_burst(self, client: mqtt.Client) -> MQTTErrorCode:
        """Read up to ``READ_BURST`` more packets that are already waiting, without a
        select() each: paho's ``loop`` reads one packet per call."""
        for _ in range(READ_BURST):
            before = self._received
            rc = client.loop_read()
            if rc != _OK or self._received == before:
                return rc
        return _OK

    def _send_acks(self) -> None:
        while True:
            try:
                generation, mid, qos = self._acks.get_nowait()
            except queue.Empty:
                return
            if generation == self._generation:
                self._client.ack(mid, qos)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.disconnect()  # no-op when the connection is already gone
                client.loop(0)

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False, manual_ack=True)
        client.connect_timeout = self.broker.connect_timeout_s
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        context = self.broker.ssl_context()
        if context is not None:
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = reason_code

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._lost = str(reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
        if refused:
            self._fatal = (f"broker refused ingest subscriptions ({', '.join(refused)}); the "
                           "cloud's MQTT user must be allowed to read edgekit/+/+/#")
        else:
            self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self._received += 1
        self.on_message(Received(message.topic, bytes(message.payload), time.time(),
                                 message.mid, self._generation, message.qos))
