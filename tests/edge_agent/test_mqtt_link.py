"""The MQTT link against a real, private Mosquitto: order, acks, will, callbacks, TLS, config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest

from edge_agent.errors import ConfigError
from edge_agent.mqtt_link import BrokerConfig, backoff_delay
from tests.brokers import DYNSEC_PLUGIN, fast_config, make_tls_files, message, seq_of

REPO = Path(__file__).resolve().parents[2]


def put_many(outbox, count: int, topic: str = "t/dev/telemetry", size: int = 0) -> list[int]:
    return [outbox.put("telemetry", topic, lambda seq: message(seq, size)) for _ in range(count)]


def seqs(received) -> list[int]:
    return [seq_of(payload) for _topic, payload, _retain in received]


def send(port: int, topic: str, payload: bytes) -> None:
    mqtt_publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port,
                        protocol=mqtt.MQTTv5)


def until_subscribed(port: int, topic: str, received: list[bytes], timeout: float = 10) -> None:
    """Send probes on ``topic`` until one reaches the link's on_message (its SUBACK is in)."""
    deadline = time.monotonic() + timeout
    while b"probe" not in received:
        assert time.monotonic() < deadline, "the link never got its subscription"
        send(port, topic, b"probe")
        wait_until(lambda: b"probe" in received, 0.5)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def test_outbox_drains_in_order_with_its_payloads(broker, make_subscriber, make_link, outbox):
    subscriber = make_subscriber(broker.port, "t/dev/#")
    sent = put_many(outbox, 300, size=120)
    link = make_link(fast_config(broker.port), max_inflight=8)
    link.start()
    assert link.wait_drained(20)
    sent += put_many(outbox, 5)  # also what is put while connected
    assert link.wait_drained(5)
    got = subscriber.wait_for(lambda got: len(got) >= len(sent), 10)
    assert seqs(got) == sent
    assert all(len(payload) >= 120 for _t, payload, _r in got[:300])
    stats = link.stats()
    assert stats["published"] == stats["acked"] == len(sent)
    assert stats["inflight"] == 0 and 1 <= stats["max_inflight_seen"] <= 8
    assert (stats["connects"], stats["disconnects"]) == (1, 0) and link.connected


def test_in_flight_never_exceeds_the_brokers_receive_maximum(make_broker, make_link, outbox):
    broker = make_broker(max_inflight=5)
    put_many(outbox, 200)
    link = make_link(fast_config(broker.port), max_inflight=32)
    link.start()
    assert link.wait_drained(20)
    assert link.stats()["max_inflight_seen"] == 5


def test_will_is_published_retained_offline_when_the_process_dies(broker, make_subscriber,
                                                                  tmp_path):
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from edge_agent.mqtt_link import BrokerConfig, MqttLink
        from edge_agent.outbox import Outbox
        link = None
        def online():
            ok = link.publish_direct("t/dev/status", b"online", retain=True)
            print("online", ok, flush=True)
        link = MqttLink(BrokerConfig(port={broker.port}), "will-dev",
                        Outbox(Path(sys.argv[1])), "t/dev/status", b"offline", [],
                        lambda t, p: None, on_connect=online)
        link.start()
        time.sleep(120)
        """)
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path / "o.sqlite")],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["online", "True"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    watcher = make_subscriber(broker.port, "t/dev/status", client_id="late-watcher")
    got = watcher.wait_for(lambda got: got and got[-1][1] == b"offline", 10)
    assert got[-1] == ("t/dev/status", b"offline", True)


def test_on_message_exceptions_never_kill_the_link(broker, make_subscriber, make_link, outbox):
    received: list[bytes] = []

    def on_message(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("a broken command handler")
        received.append(payload)

    subscriber = make_subscriber(broker.port, "t/dev/telemetry")
    link = make_link(fast_config(broker.port), subscriptions=["t/dev/cmd"], on_message=on_message)
    link.start()
    until_subscribed(broker.port, "t/dev/cmd", received)
    received.clear()
    for payload in (b"one", b"boom", b"two"):
        send(broker.port, "t/dev/cmd", payload)
    assert wait_until(lambda: len([p for p in received if p != b"probe"]) == 2, 10)
    assert [p for p in received if p != b"probe"] == [b"one", b"two"]
    assert link.stats()["callback_errors"] == 1 and link.stats()["messages_received"] >= 4
    put_many(outbox, 3)
    assert link.wait_drained(10) and link.connected
    assert len(subscriber.wait_for(lambda got: len(got) == 3, 5)) == 3


def test_on_connect_runs_after_each_connect_and_can_publish_direct(broker, make_subscriber,
                                                                   make_link):
    results: list[bool] = []
    subscriber = make_subscriber(broker.port, "t/dev/status")
    link = None

    def on_connect() -> None:
        results.append(link.publish_direct("t/dev/status", b"online", retain=True, timeout=5))

    link = make_link(fast_config(broker.port), on_connect=on_connect)
    assert link.publish_direct("t/dev/status", b"early", timeout=0.1) is False  # not connected
    link.start()
    assert wait_until(lambda: results == [True], 10)
    got = subscriber.wait_for(lambda got: got, 5)
    assert got[0][:2] == ("t/dev/status", b"online")
    assert link.stats()["direct_published"] == 1


def test_commands_sent_while_offline_arrive_on_reconnect(broker, make_link):
    received: list[bytes] = []
    probes: list[bytes] = []
    cfg = fast_config(broker.port)
    first = make_link(cfg, client_id="dev-persistent", subscriptions=["t/dev/cmd"],
                      on_message=lambda t, p: probes.append(p))
    first.start()
    until_subscribed(broker.port, "t/dev/cmd", probes)
    first.stop()  # clean disconnect: the broker keeps the session and its subscription
    send(broker.port, "t/dev/cmd", b"update while you were away")
    second = make_link(cfg, client_id="dev-persistent", subscriptions=["t/dev/cmd"],
                       on_message=lambda t, p: received.append(p))
    second.start()
    assert wait_until(lambda: b"update while you were away" in received, 10)
    assert [p for p in received if p != b"probe"] == [b"update while you were away"]


def test_a_message_is_acknowledged_only_after_on_message_returned(broker, make_link):
    """Manual ack: a callback that failed leaves the message with the broker, which resends it."""
    probes: list[bytes] = []
    cfg = fast_config(broker.port)

    def failing(topic: str, payload: bytes) -> None:
        probes.append(payload)
        if payload.startswith(b"cmd"):
            raise RuntimeError("the disk is full; cannot journal the command")

    first = make_link(cfg, client_id="dev-ack", subscriptions=["t/dev/cmd"], on_message=failing)
    first.start()
    until_subscribed(broker.port, "t/dev/cmd", probes)
    send(broker.port, "t/dev/cmd", b"cmd-1")
    assert wait_until(lambda: b"cmd-1" in probes, 10)
    first.stop()  # cmd-1 was never acknowledged
    received: list[bytes] = []
    second = make_link(cfg, client_id="dev-ack", subscriptions=["t/dev/cmd"],
                       on_message=lambda t, p: received.append(p))
    second.start()
    assert wait_until(lambda: b"cmd-1" in received, 10), received
    second.stop()  # this time it was acknowledged: a third session gets nothing
    third_got: list[bytes] = []
    third = make_link(cfg, client_id="dev-ack", subscriptions=["t/dev/cmd"],
                      on_message=lambda t, p: third_got.append(p))
    third.start()
    until_subscribed(broker.port, "t/dev/cmd", third_got)
    assert b"cmd-1" not in third_got


def test_a_callable_will_is_asked_for_a_fresh_payload_on_every_connect(make_broker, make_link):
    broker = make_broker(persistent=True)
    wills: list[bytes] = []

    def will() -> bytes:
        wills.append(f"offline-{len(wills)}".encode())
        return wills[-1]

    link = make_link(fast_config(broker.port), will_payload=will)
    link.start()
    assert wait_until(lambda: link.connected, 10)
    broker.stop()
    broker.start()
    assert wait_until(lambda: link.stats()["connects"] == 2, 20)
    assert len(wills) >= 2 and len(set(wills)) == len(wills)


def test_a_refused_subscription_is_reported(tmp_path, make_broker, make_link):
    import json

    if not Path(DYNSEC_PLUGIN).exists():
        pytest.skip("mosquitto's dynamic security plugin is not installed")
    acl = {"defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                                "subscribe": False, "unsubscribe": True},
           "clients": [], "groups": [], "roles": []}
    (tmp_path / "dynsec.json").write_text(json.dumps(acl))
    broker = make_broker(extra_conf=f"plugin {DYNSEC_PLUGIN}\n"
                                    f"plugin_opt_config_file {tmp_path / 'dynsec.json'}")
    refused: list[list[str]] = []
    link = make_link(fast_config(broker.port), subscriptions=["t/dev/cmd"],
                     on_subscribe_refused=refused.append)
    link.start()
    assert wait_until(lambda: refused, 10)
    assert "Not authorized" in refused[0][0] and link.stats()["subscribe_refused"] == 1


def test_link_resends_after_the_broker_restarts(make_broker, make_subscriber, make_link,
                                                outbox):
    broker = make_broker(persistent=True)
    subscriber = make_subscriber(broker.port, "t/dev/telemetry", persistent=True)
    link = make_link(fast_config(broker.port))
    link.start()
    sent = put_many(outbox, 20)
    assert link.wait_drained(10)
    broker.stop()
    assert wait_until(lambda: not link.connected, 5)
    sent += put_many(outbox, 20)
    broker.start()
    assert link.wait_drained(15)
    got = subscriber.wait_for(lambda got: set(seqs(got)) >= set(sent), 10)
    assert set(seqs(got)) == set(sent)
    assert link.stats()["disconnects"] == 1 and link.stats()["connects"] == 2


def test_a_refused_connection_is_retried_without_crashing(make_broker, make_link, outbox):
    broker = make_broker(anonymous=False)
    put_many(outbox, 3)
    link = make_link(fast_config(broker.port))
    link.start()
    time.sleep(1.0)
    assert not link.connected and link.stats()["connects"] == 0
    assert outbox.stats().queued == 3
    started = time.monotonic()
    link.stop(timeout=5)
    assert time.monotonic() - started < 2


def test_stop_is_prompt_when_no_broker_listens(make_link):
    from tests.brokers import free_port

    link = make_link(fast_config(free_port()))
    link.start()
    time.sleep(0.5)
    started = time.monotonic()
    link.stop(timeout=5)
    assert time.monotonic() - started < 1.5 and not link.connected


def test_mutual_tls_link_delivers(tmp_path, make_broker, make_subscriber, make_link, outbox):
    tls = make_tls_files(tmp_path / "tls")
    broker = make_broker(tls=tls)
    subscriber = make_subscriber(broker.port, "t/dev/#", tls=tls)
    cfg = BrokerConfig.from_url(broker.url, tls_ca=str(tls.ca), tls_cert=str(tls.client_cert),
                                tls_key=str(tls.client_key), reconnect_max_s=1.0)
    sent = put_many(outbox, 5)
    link = make_link(cfg)
    link.start()
    assert link.wait_drained(10)
    assert seqs(subscriber.wait_for(lambda got: len(got) == 5, 5)) == sent


def test_tls_broker_refuses_a_link_without_client_certificate(tmp_path, make_broker, make_link):
    tls = make_tls_files(tmp_path / "tls")
    broker = make_broker(tls=tls)
    link = make_link(BrokerConfig.from_url(broker.url, tls_ca=str(tls.ca), reconnect_max_s=1.0))
    link.start()
    time.sleep(1.0)
    assert not link.connected and link.stats()["connects"] == 0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("setting, match", [
    (lambda t: dict(tls_ca="/nonexistent/ca.pem"), "CA file: /nonexistent/ca.pem does not exist"),
    (lambda t: dict(tls_ca=str(t.client_key)), "CA file .* cannot be used"),
    (lambda t: dict(tls_cert=str(t.client_cert)), "must be given together"),
    (lambda t: dict(tls_key=str(t.client_key)), "must be given together"),
    (lambda t: dict(tls_cert=str(t.client_cert), tls_key=str(t.server_key)),
     "client certificate/key .* cannot be used"),
    (lambda t: dict(tls_cert=str(t.client_cert), tls_key="/nonexistent/key.pem"),
     "/nonexistent/key.pem does not exist"),
], ids=["missing-ca", "ca-not-a-cert", "cert-without-key", "key-without-cert",
        "key-does-not-match", "missing-key"])
def test_tls_config_errors_are_one_clear_line(tls_files, make_link, setting, match):
    cfg = BrokerConfig.from_url("mqtts://127.0.0.1:8883", **setting(tls_files))
    with pytest.raises(ConfigError, match=match) as err:
        make_link(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker.local", ("broker.local", 1883, False, None, None)),
    ("mqtts://broker.local", ("broker.local", 8883, True, None, None)),
    ("mqtt://10.0.0.5:1884/", ("10.0.0.5", 1884, False, None, None)),
    ("mqtts://dev%2B1:p%40ss@[::1]:8884", ("::1", 8884, True, "dev+1", "p@ss")),
])
def test_broker_url_is_parsed(url, expected):
    cfg = BrokerConfig.from_url(url)
    assert (cfg.host, cfg.port, cfg.uses_tls, cfg.username, cfg.password) == expected


def test_broker_url_keywords_override():
    cfg = BrokerConfig.from_url("mqtt://u:p@h", password="other", keepalive_s=60)
    assert (cfg.username, cfg.password, cfg.keepalive_s) == ("u", "other", 60)
    cfg = BrokerConfig.from_url("mqtt://u:p@h", username=None, password=None, tls_ca=None)
    assert (cfg.username, cfg.password, cfg.uses_tls) == ("u", "p", False)  # None = not given


@pytest.mark.parametrize("url, match", [
    ("http://broker:1883", "must look like mqtt://HOST"),
    ("broker:1883", "must look like mqtt://HOST"),
    ("mqtt://", "has no host"),
    ("mqtt://broker:99999", "invalid port"),
    ("mqtt://broker:abc", "invalid port"),
    ("mqtt://broker/some/path", "must not have a path"),
    ("mqtt://broker?x=1", "must not have a path"),
    ("mqtt://user:secret@broker:abc", "invalid port"),
])
def test_bad_broker_urls_are_one_clear_line(url, match):
    with pytest.raises(ConfigError, match=match) as err:
        BrokerConfig.from_url(url)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


@pytest.mark.parametrize("field, value", [
    ("port", 0), ("port", 70000), ("keepalive_s", 1), ("connect_timeout_s", 0),
    ("session_expiry_s", -1), ("reconnect_min_s", 0), ("reconnect_max_s", 0.1), ("host", ""),
])
def test_bad_broker_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        BrokerConfig(**{field: value})


def test_link_arguments_are_checked(make_link):
    with pytest.raises(ConfigError, match="client id"):
        make_link(BrokerConfig(), client_id="")
    with pytest.raises(ConfigError, match="max_inflight"):
        make_link(BrokerConfig(), max_inflight=0)


def test_backoff_grows_exponentially_to_the_cap_with_jitter():
    lows = [backoff_delay(n, 0.5, 30.0, rand=lambda: 0.0) for n in range(10)]
    highs = [backoff_delay(n, 0.5, 30.0, rand=lambda: 1.0) for n in range(10)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert lows == [h / 2 for h in highs]
    assert backoff_delay(10_000, 0.5, 30.0) <= 30.0
