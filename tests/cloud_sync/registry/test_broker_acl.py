"""The generated passwd + ACL files loaded into a real Mosquitto: each device reaches only its
own topics, the cloud's user reaches all of them, wrong passwords are refused."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.registry import add_device, ensure_service_account, remove_device
from cloud_sync.registry import write_broker_config as write_files
from cloud_sync.store import transaction
from edge_agent.protocol import subscription, topic
from tests.brokers import MOSQUITTO, Mosquitto

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto not installed")
WAIT = 5.0


@dataclass
class Client:
    """A paho MQTT v5 client logged in as one user, recording what it receives."""

    port: int
    username: str
    password: str
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"{self.username}-{time.monotonic_ns()}",
                                  reconnect_on_failure=False)
        self.client.username_pw_set(self.username, self.password)
        self.connack = threading.Event()
        self.suback = threading.Event()
        self.reason = None
        self.sub_reasons: list = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic,
                                                                         bytes(m.payload)))

    def _on_connect(self, _client, _userdata, _flags, reason, _props) -> None:
        self.reason = reason
        self.connack.set()

    def _on_subscribe(self, _client, _userdata, _mid, reasons, _props) -> None:
        self.sub_reasons = list(reasons)
        self.suback.set()

    def connect(self) -> Client:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        assert self.connack.wait(WAIT), "no CONNACK"
        return self

    @property
    def refused(self) -> bool:
        return self.reason is not None and self.reason.is_failure

    def subscribe(self, *topics: str) -> list:
        self.suback.clear()
        self.client.subscribe([(t, 1) for t in topics])
        assert self.suback.wait(WAIT), "no SUBACK"
        return self.sub_reasons

    def publish(self, name: str, payload: bytes) -> None:
        self.client.publish(name, payload, qos=1).wait_for_publish(WAIT)

    def attempt(self, name: str, payload: bytes) -> None:
        """Publish where it may be refused: Mosquitto 2.0 answers 'not authorized' and may
        drop the connection; either way the call returns."""
        info = self.client.publish(name, payload, qos=1)
        deadline = time.monotonic() + WAIT
        while not info.is_published() and self.client.is_connected() and \
                time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_for(self, name: str, payload: bytes) -> bool:
        deadline = time.monotonic() + WAIT
        while (name, payload) not in self.received and time.monotonic() < deadline:
            time.sleep(0.02)
        return (name, payload) in self.received

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Setup:
    """A broker configured from the registry, and everybody's credentials."""

    broker: Mosquitto
    out: Path
    passwords: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    def login(self, user: str, password: str | None = None) -> Client:
        client = Client(self.broker.port, user, password or self.passwords[user]).connect()
        self.clients.append(client)
        assert not client.refused, f"{user} refused: {client.reason}\n{self.broker.log}"
        return client


def _broker_conf(out: Path) -> str:
    """The generated snippet without its listener (the test broker has its own port)."""
    lines = (out / "mosquitto.conf").read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("listener"))


@pytest.fixture()
def setup(engine, tmp_path):
    passwords = {}
    with transaction(engine) as conn:
        for device, fleet in (("pi-a", "lab"), ("pi-b", "lab"), ("pi-c", "field")):
            passwords[device] = add_device(conn, device, fleet).password
        account = ensure_service_account(conn, "edgekit-cloud", tmp_path / "svc.password")
        write_files(conn, tmp_path / "broker")
    passwords["edgekit-cloud"] = account.password_file.read_text().strip()
    broker = Mosquitto(tmp_path / "mosq", anonymous=False,
                       extra_conf=_broker_conf(tmp_path / "broker")).start()
    result = Setup(broker, tmp_path / "broker", passwords)
    yield result
    for client in result.clients:
        client.stop()
    broker.stop()


def test_device_publishes_its_own_telemetry_and_the_cloud_reads_it(setup):
    cloud = setup.login("edgekit-cloud")
    cloud.subscribe(subscription("#"))
    device = setup.login("pi-a")
    for kind in ("telemetry", "samples", "status", "cmd/result"):
        device.publish(topic("lab", "pi-a", kind), kind.encode())
        assert cloud.wait_for(topic("lab", "pi-a", kind), kind.encode()), setup.broker.log


def test_device_cannot_publish_as_another_device(setup):
    cloud = setup.login("edgekit-cloud")
    cloud.subscribe(subscription("#"))
    for name, payload in ((topic("lab", "pi-b", "telemetry"), b"forged"),
                          (topic("field", "pi-a", "telemetry"), b"wrong fleet"),
                          (topic("lab", "pi-a", "cmd"), b"own cmd is read-only"),
                          ("edgekit/lab/_events/x", b"event")):
        setup.login("pi-a").attempt(name, payload)
    setup.login("pi-a").publish(topic("lab", "pi-a", "telemetry"), b"marker")
    assert cloud.wait_for(topic("lab", "pi-a", "telemetry"), b"marker")
    assert [p for _t, p in cloud.received] == [b"marker"]


def test_device_reads_only_its_own_commands(setup):
    cloud = setup.login("edgekit-cloud")
    device = setup.login("pi-a")
    device.subscribe(topic("lab", "pi-a", "cmd"), topic("lab", "pi-b", "cmd"),
                     subscription("telemetry"))
    cloud.publish(topic("lab", "pi-b", "cmd"), b"for b")
    cloud.publish(topic("lab", "pi-a", "cmd"), b"for a")
    assert device.wait_for(topic("lab", "pi-a", "cmd"), b"for a")
    other = setup.login("pi-b")
    other.publish(topic("lab", "pi-b", "telemetry"), b"b's figures")
    cloud.publish(topic("lab", "pi-a", "cmd"), b"marker")
    assert device.wait_for(topic("lab", "pi-a", "cmd"), b"marker")
    assert [p for _t, p in device.received] == [b"for a", b"marker"]


def test_cloud_writes_any_command_and_fleet_events(setup):
    cloud = setup.login("edgekit-cloud")
    watcher = setup.login("edgekit-cloud")
    watcher.subscribe("edgekit/+/_events/#")
    device = setup.login("pi-c")
    device.subscribe(topic("field", "pi-c", "cmd"))
    cloud.publish(topic("field", "pi-c", "cmd"), b"ping")
    cloud.publish("edgekit/field/_events/drift", b"event")
    assert device.wait_for(topic("field", "pi-c", "cmd"), b"ping")
    assert watcher.wait_for("edgekit/field/_events/drift", b"event")


def test_cloud_reads_through_a_shared_subscription(setup):
    """What ingest workers do: split the load over $share/<group>/..."""
    worker = setup.login("edgekit-cloud")
    worker.subscribe(f"$share/edgekit-ingest/{subscription('telemetry')}")
    setup.login("pi-b").publish(topic("lab", "pi-b", "telemetry"), b"t")
    assert worker.wait_for(topic("lab", "pi-b", "telemetry"), b"t"), setup.broker.log


@pytest.mark.parametrize("user, password", [("pi-a", "wrong"), ("pi-a", ""),
                                            ("nobody", "x"), ("edgekit-cloud", "wrong")])
def test_wrong_credentials_are_refused(setup, user, password):
    client = Client(setup.broker.port, user, password).connect()
    setup.clients.append(client)
    assert client.refused


def test_removed_device_is_refused_after_reload(setup, engine):
    with transaction(engine) as conn:
        remove_device(conn, "pi-b")
        write_files(conn, setup.out)
    os.kill(setup.broker.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while True:
        client = Client(setup.broker.port, "pi-b", setup.passwords["pi-b"]).connect()
        setup.clients.append(client)
        if client.refused or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert client.refused
    setup.login("pi-a")  # the others still get in
