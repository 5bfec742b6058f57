"""Ingest fixtures: a private mosquitto, configs, workers in threads or processes, a publisher."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Mosquitto


@pytest.fixture()
def mqtt_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private mosquitto (unbounded queues, as the deployment notes ask)."""
    with Mosquitto(tmp_path / "broker", max_inflight=1000) as broker:
        yield broker


@pytest.fixture()
def make_cfg(tmp_path: Path, db_url: str, mqtt_broker: Mosquitto) -> Callable[..., object]:
    """A CloudConfig on ``db_url`` and the private broker; keyword arguments override."""
    from cloud_sync.config import CloudConfig

    def make(**over) -> CloudConfig:
        ingest = {"batch_age_s": 0.05, **over.pop("ingest", {})}
        doc = {"data_dir": str(tmp_path / "data"), "db": db_url, "broker": mqtt_broker.url,
               "ingest": ingest, **over}
        return CloudConfig.from_dict(doc)

    return make


class ThreadWorker:
    """An IngestWorker running on a thread of the test process."""

    def __init__(self, cfg, engine, client_id: str = "test-ingest-0") -> None:
        from cloud_sync.ingest.mqtt import broker_for
        from cloud_sync.ingest.worker import IngestWorker

        self.worker = IngestWorker(cfg, engine, broker_for(cfg, {}), client_id)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def start(self) -> ThreadWorker:
        self.thread.start()
        if not self.worker.client.subscribed.wait(10):
            raise RuntimeError("ingest worker did not subscribe within 10 s")
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)


@pytest.fixture()
def thread_worker(engine, make_cfg) -> Iterator[Callable[..., ThreadWorker]]:
    """Start ingest workers on threads (stopped after the test)."""
    started: list[ThreadWorker] = []

    def start(cfg=None, client_id: str = "test-ingest-0") -> ThreadWorker:
        worker = ThreadWorker(cfg or make_cfg(), engine, client_id).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


class Publisher:
    """A plain paho MQTT v5 client publishing raw payloads at QoS 1."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, items: list[tuple[str, bytes]], timeout: float = 30.0) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def publisher(mqtt_broker) -> Iterator[Publisher]:
    """A connected publisher on the private broker."""
    pub = Publisher(mqtt_broker.port)
    yield pub
    pub.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 0.1 s; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def wait_subscribed(engine, publisher: Publisher, timeout: float = 30.0) -> None:
    """Publish probe telemetry (device ``probe``, fleet ``probe``) until one is stored: a
    worker process is subscribed, so nothing published from now on is dropped."""
    from tests.cloud_sync.ingest import messages as m

    deadline, seq = time.monotonic() + timeout, 0
    while count(engine, "SELECT count(*) FROM messages WHERE device_id = 'probe'") == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no ingest worker stored a probe within {timeout} s")
        publisher.send([(m.topic("probe", fleet="probe"), m.telemetry("probe", seq))])
        seq += 1
        time.sleep(0.3)


def count(engine, sql: str) -> int:
    """The integer result of one SQL query."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar() or 0
