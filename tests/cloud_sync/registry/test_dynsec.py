"""Live credentials through Mosquitto's dynamic-security plugin: a real broker on a free
port, its admin made by ``mosquitto_ctrl dynsec init``; devices added and removed with no
reload, checked by connecting, publishing and subscribing as the device."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.broker_settings import Dynsec
from cloud_sync.errors import CloudError
from cloud_sync.registry import dynsec
from cloud_sync.registry.topic_rules import device_rules
from edge_agent.errors import EdgekitError
from tests.brokers import DYNSEC_PLUGIN, Mosquitto

ADMIN_PASSWORD = "admin-Secret-5c6d7e8f"
pytestmark = pytest.mark.skipif(
    not Path(DYNSEC_PLUGIN).exists() or shutil.which("mosquitto_ctrl") is None,
    reason="mosquitto's dynamic-security plugin or mosquitto_ctrl is not installed")


@pytest.fixture()
def broker(tmp_path):
    """A mosquitto with the dynsec plugin; its only client is the admin."""
    config = tmp_path / "dynamic-security.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(config), "admin", ADMIN_PASSWORD],
                   check=True, capture_output=True)
    broker = Mosquitto(tmp_path / "broker", anonymous=False, extra_conf=(
        f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config}")).start()
    yield broker
    broker.stop()


@pytest.fixture()
def settings(monkeypatch) -> Dynsec:
    monkeypatch.setenv("EDGEKIT_DYNSEC_PASSWORD", ADMIN_PASSWORD)
    return Dynsec(enabled=True, timeout_s=5)


class Device:
    """A paho client logged in as a device; records CONNACK, SUBACK and PUBACK codes."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"c-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.connack, self.suback, self.pubacks = None, None, {}
        self.gone = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: setattr(self, "suback", rcs)
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.client.on_disconnect = lambda *a: self.gone.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        _wait(lambda: self.connack is not None)

    @property
    def accepted(self) -> bool:
        return not self.connack.is_failure

    def publish(self, topic: str):
        mid = self.client.publish(topic, b"{}", qos=1).mid
        _wait(lambda: mid in self.pubacks)
        return self.pubacks[mid]

    def subscribe(self, topic: str):
        self.suback = None
        self.client.subscribe(topic, qos=1)
        _wait(lambda: self.suback is not None)
        return self.suback[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(done, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_role_grants_exactly_the_acl_files_rules():
    acls = dynsec.role_acls(device_rules("pi-1", "lab"))
    assert {(a["acltype"], a["topic"]) for a in acls} == {
        ("publishClientSend", "edgekit/lab/pi-1/telemetry"),
        ("publishClientSend", "edgekit/lab/pi-1/samples"),
        ("publishClientSend", "edgekit/lab/pi-1/status"),
        ("publishClientSend", "edgekit/lab/pi-1/cmd/result"),
        ("subscribePattern", "edgekit/lab/pi-1/cmd"),
        ("publishClientReceive", "edgekit/lab/pi-1/cmd")}
    assert all(a["allow"] for a in acls)


def test_a_device_added_live_connects_and_is_confined_then_removed_live(broker, settings):
    with dynsec.DynsecSession(settings, broker.url) as session:
        dynsec.add_device(session, "pi-1", "lab", "pi-1-Passw0rd")
        dynsec.add_device(session, "pi-2", "lab", "pi-2-Passw0rd")
    assert "pi-1-Passw0rd" not in broker.log  # the plugin logs '*****' for passwords
    device = Device(broker.port, "pi-1", "pi-1-Passw0rd")
    assert device.accepted, device.connack
    assert not device.subscribe("edgekit/lab/pi-1/cmd").is_failure
    assert device.subscribe("edgekit/lab/pi-2/cmd").is_failure
    assert device.subscribe("edgekit/#").is_failure
    assert not device.publish("edgekit/lab/pi-1/telemetry").is_failure
    other = Device(broker.port, "pi-1", "pi-1-Passw0rd")  # paho drops after a refused PUBACK
    assert other.publish("edgekit/lab/pi-2/telemetry").is_failure  # not its own
    other.close()
    assert not Device(broker.port, "pi-1", "wrong").accepted

    with dynsec.DynsecSession(settings, broker.url) as session:
        dynsec.remove_device(session, "pi-1")
        dynsec.remove_device(session, "pi-1")  # twice is fine
    assert device.gone.wait(5), "the removed device stays connected"
    device.close()
    assert not Device(broker.port, "pi-1", "pi-1-Passw0rd").accepted
    assert Device(broker.port, "pi-2", "pi-2-Passw0rd").accepted


def test_adding_again_gives_the_existing_client_the_new_password(broker, settings):
    with dynsec.DynsecSession(settings, broker.url) as session:
        dynsec.add_device(session, "pi-1", "lab", "old-Passw0rd")
        dynsec.add_device(session, "pi-1", "lab", "new-Passw0rd")
    assert Device(broker.port, "pi-1", "new-Passw0rd").accepted
    assert not Device(broker.port, "pi-1", "old-Passw0rd").accepted


def test_sync_repairs_roles_and_names_the_devices_that_need_a_password(broker, settings):
    with dynsec.DynsecSession(settings, broker.url) as session:
        dynsec.add_device(session, "pi-1", "lab", "pi-1-Passw0rd")
        session.check([dynsec.modify_role("edgekit-device-pi-1", [])])  # damaged
        report = dynsec.sync(session, [("pi-1", "lab"), ("pi-9", "lab")], "edgekit-cloud",
                             "svc-Passw0rd")
    assert report.created == ["pi-9", "edgekit-cloud"] and report.repaired == ["pi-1"]
    assert report.needs_password == ["pi-9"] and report.roles == 3
    device = Device(broker.port, "pi-1", "pi-1-Passw0rd")  # its password survived
    assert not device.publish("edgekit/lab/pi-1/telemetry").is_failure  # role repaired
    service = Device(broker.port, "edgekit-cloud", "svc-Passw0rd")
    assert not service.subscribe("edgekit/+/+/telemetry").is_failure
    assert not service.publish("edgekit/lab/pi-1/cmd").is_failure
    assert service.publish("edgekit/lab/pi-1/telemetry").is_failure


def test_the_service_user_gets_its_shared_subscription(broker, settings):
    with dynsec.DynsecSession(settings, broker.url) as session:
        dynsec.sync(session, [], "edgekit-cloud", "svc-Passw0rd")
    service = Device(broker.port, "edgekit-cloud", "svc-Passw0rd")
    assert not service.subscribe("$share/edgekit-ingest/edgekit/+/+/telemetry").is_failure


def test_a_wrong_admin_password_is_one_line_without_the_password(broker, monkeypatch):
    monkeypatch.setenv("EDGEKIT_DYNSEC_PASSWORD", "not-the-Passw0rd")
    with pytest.raises(CloudError) as err:
        dynsec.DynsecSession(Dynsec(timeout_s=5), broker.url).connect()
    message = str(err.value)
    assert "refused the dynsec admin 'admin'" in message and "\n" not in message
    assert "not-the-Passw0rd" not in message


def test_a_broker_without_the_plugin_times_out_with_a_hint(tmp_path, settings):
    quick = settings.model_copy(update={"timeout_s": 1})
    with Mosquitto(tmp_path / "plain") as plain, \
            pytest.raises(CloudError, match="is the dynamic-security plugin loaded"), \
            dynsec.DynsecSession(quick, plain.url) as session:  # no plugin: nobody answers
        dynsec.add_device(session, "pi-1", "lab", "pi-1-Passw0rd")


def test_a_refused_command_names_it_and_how_to_fix(broker, settings):
    with dynsec.DynsecSession(settings, broker.url) as session, \
            pytest.raises(CloudError) as err:
        session.check([dynsec.create_client("pi-1", "no-such-role", "pi-1-Passw0rd")])
    message = str(err.value)
    assert message.startswith("dynamic security refused createClient pi-1") and \
        "pi-1-Passw0rd" not in message and "\n" not in message


def test_no_broker_configured_says_where_to_set_it(settings):
    with pytest.raises(EdgekitError, match="set 'broker'"):
        dynsec.DynsecSession(settings, None)


def test_a_missing_admin_password_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("EDGEKIT_DYNSEC_PASSWORD", raising=False)
    with pytest.raises(Exception, match="EDGEKIT_DYNSEC_PASSWORD"):
        Dynsec().admin_password()


def test_commands_never_carry_a_password_unless_given():
    assert "password" not in dynsec.create_client("pi-1", "r")
    assert json.loads(json.dumps(dynsec.modify_client("pi-1", "r", "p")))["password"] == "p"
    assert dynsec.describe(dynsec.create_client("pi-1", "r", "p")) == "createClient pi-1"
