"""The worker's throughput settings: burst reads of waiting packets, a cheap cyclic GC."""

from __future__ import annotations

import subprocess
import sys

from cloud_sync.ingest import mqtt as ingest_mqtt
from cloud_sync.ingest.mqtt import IngestClient
from edge_agent.broker_config import BrokerConfig


class _Waiting:
    """A paho stand-in with ``waiting`` packets to read; each delivers one message."""

    def __init__(self, owner: IngestClient, waiting: int) -> None:
        self.owner, self.waiting, self.reads = owner, waiting, 0

    def loop_read(self):
        self.reads += 1
        if self.waiting:
            self.waiting -= 1
            self.owner._on_message(None, None, _Message())
        return ingest_mqtt._OK


class _Message:
    topic, payload, mid, qos = "edgekit/f/d/telemetry", b"{}", 1, 1


def _client() -> tuple[IngestClient, list]:
    got: list = []
    client = IngestClient(BrokerConfig.from_url("mqtt://127.0.0.1:1"), "c", "g", 1000, 60,
                          got.append)
    return client, got


def test_a_burst_reads_what_is_waiting_and_stops_when_nothing_came():
    client, got = _client()
    paho = _Waiting(client, waiting=5)
    assert client._read_burst(paho) == ingest_mqtt._OK
    assert len(got) == 5 and paho.reads == 6  # the sixth read found nothing: stop


def test_a_burst_is_bounded_so_acks_still_go_out():
    client, got = _client()
    paho = _Waiting(client, waiting=10 * ingest_mqtt.READ_BURST)
    client._read_burst(paho)
    assert len(got) == paho.reads == ingest_mqtt.READ_BURST


def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds():
    code = ("import gc; from cloud_sync.ingest.worker import tune_gc, GC_THRESHOLDS; "
            "tune_gc(); assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); "
            "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
