"""A private Mosquitto for tests and benchmarks: own port, own folder, stopped by its PID only.

Never touches a system broker (e.g. the one on 127.0.0.1:1883). Also makes a tiny
certificate authority with ``cryptography`` for TLS / mutual-TLS brokers.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.mqtt_link import BrokerConfig
from edgekit.local_broker import free_port, port_open

MOSQUITTO = os.environ.get("EDGEKIT_MOSQUITTO", "/usr/sbin/mosquitto")


@dataclass
class TlsFiles:
    """PEM files of a test CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


class Mosquitto:
    """One mosquitto process listening on 127.0.0.1:``port``, configured in ``folder``."""

    def __init__(self, folder: Path, port: int | None = None, persistent: bool = False,
                 tls: TlsFiles | None = None, max_inflight: int = 100,
                 anonymous: bool = True, extra_conf: str = "") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistent = persistent
        self.tls = tls
        self.max_inflight = max_inflight  # also the Receive Maximum it announces in CONNACK
        self.anonymous = anonymous  # False (and no password file): every CONNECT is refused
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """mqtt:// (or mqtts:// for a TLS broker) URL of this broker."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _conf(self) -> str:
        lines = [f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {'true' if self.anonymous else 'false'}",
                 f"user {getpass.getuser()}",  # as root, stay root (the folder is ours)
                 "max_queued_messages 0", f"max_inflight_messages {self.max_inflight}",
                 f"log_dest file {self.folder / 'mosquitto.log'}",
                 "log_type error", "log_type warning", "log_type notice",
                 f"persistence {'true' if self.persistent else 'false'}",
                 f"persistence_location {self.folder}/"]
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.server_cert}",
                      f"keyfile {self.tls.server_key}", "require_certificate true"]
        return "\n".join(lines) + "\n" + self.extra_conf + "\n"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start the broker and wait until its port accepts connections."""
        conf = self.folder / "mosquitto.conf"
        conf.write_text(self._conf())
        with open(self.folder / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.folder / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited at start: {err}{self.log}")
            if _port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, so a persistent one saves its state); SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Subscriber:
    """A plain paho MQTT v5 subscriber that records what it receives.

    With ``persistent=True`` it keeps a broker session (clean_start=False), so a
    persistent broker queues messages for it across its own restarts; it reconnects
    by itself (paho's loop thread) when the broker goes away.
    """

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-subscriber",
                 persistent: bool = False, tls: TlsFiles | None = None) -> None:
        self.port, self.topic, self.persistent = port, topic, persistent
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.2, 1)
        if tls:
            self.client.tls_set(str(tls.ca), str(tls.client_cert), str(tls.client_key))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def start(self, timeout: float = 10.0) -> Subscriber:
        """Connect, subscribe, and wait for the SUBACK."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self.persistent else 0
        self.client.connect("127.0.0.1", self.port, keepalive=10,
                            clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise RuntimeError(f"subscriber got no SUBACK within {timeout} s")
        return self

    def stop(self) -> None:
        """Disconnect and end paho's loop thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append(message)

    def count(self) -> int:
        """How many messages arrived so far."""
        with self.lock:
            return len(self.messages)

    def received(self) -> list[tuple[str, bytes, bool]]:
        """(topic, payload, retain) of every message so far, in arrival order."""
        with self.lock:
            return [(m.topic, bytes(m.payload), bool(m.retain)) for m in self.messages]

    def wait_for(self, done: Callable[[list[tuple[str, bytes, bool]]], bool],
                 timeout: float) -> list[tuple[str, bytes, bool]]:
        """Poll until ``done(received())`` or ``timeout``; returns what was received."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if done(got) or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)


def _port_open(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.2)


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "edgekit test CA")])
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, is_ca=True)
    files = {"ca": _write_pem(folder / "ca.pem", ca_cert)}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"edgekit {role}")])
        cert = _certificate(name, ca_name, key.public_key(), ca_key, is_ca=False)
        files[f"{role}_cert"] = _write_pem(folder / f"{role}.pem", cert)
        files[f"{role}_key"] = _write_pem(folder / f"{role}.key", key)
    return TlsFiles(**files)


def _certificate(subject, issuer, public_key, signing_key, is_ca: bool):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write_pem(path: Path, obj) -> Path:
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "public_bytes"):
        data = obj.public_bytes(serialization.Encoding.PEM)
    else:
        data = obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    path.write_bytes(data)
    return path


def fast_config(port: int, **kw) -> BrokerConfig:
    """A broker config that reconnects quickly (tests should not wait 30 s backoffs)."""
    return BrokerConfig(port=port, **dict(dict(reconnect_min_s=0.1, reconnect_max_s=1.0), **kw))


def message(seq: int, size: int = 0) -> bytes:
    """A test payload carrying its seq, padded to at least ``size`` bytes."""
    body = json.dumps({"seq": seq}).encode()
    return body + b" " * max(0, size - len(body))


def seq_of(payload: bytes) -> int:
    """The seq inside a test payload."""
    return json.loads(payload)["seq"]


# mosquitto's dynamic-security plugin: unlike acl_file, it refuses subscriptions in SUBACK
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
