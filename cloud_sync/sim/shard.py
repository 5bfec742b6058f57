"""One process's share of the simulated fleet: its devices' clients on one ``ClientLoop``."""

from __future__ import annotations

import heapq
import time
from collections import Counter

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.sim.device import Model, SimDevice, detector_model
from cloud_sync.sim.fleet import CONNECT_WAVE, SimReport, SimSettings, schedule
from cloud_sync.sim.loop import ClientLoop
from cloud_sync.sim.reference import Drift, reference_from_bundle, shares, synthetic_reference
from edge_agent import protocol
from edge_agent.broker_config import BrokerConfig

DRAIN_TIMEOUT_S = 30.0


class Shard:
    """The devices of one shard and their MQTT clients."""

    def __init__(self, settings: SimSettings, index: int, count: int) -> None:
        self.settings, self.loop = settings, ClientLoop()
        self.broker = BrokerConfig.from_url(settings.broker)
        rng = np.random.default_rng(settings.seed * 1000 + index)
        self.rng, self.model = rng, _model(settings)
        identities = _identities(settings)
        self.numbers = [i for i in range(len(identities)) if i % count == index]
        self.sims = [SimDevice(*identities[i][:2], self.model,
                               np.random.default_rng(rng.integers(1 << 32)), *identities[i][2:])
                     for i in self.numbers]
        self.drift_cut = round(settings.drift_fraction * len(identities))
        self.clients: list[mqtt.Client] = []
        self.stats: Counter = Counter()
        self.published: Counter = Counter()
        self.inflight = 0

    def connect_all(self) -> None:
        """Connect every device in waves; each says ``online`` once connected."""
        for start in range(0, len(self.sims), CONNECT_WAVE):
            for sim in self.sims[start:start + CONNECT_WAVE]:
                self.clients.append(self._client(sim))
            self.loop.run_for(0.05)
        deadline = time.monotonic() + 30
        while self.stats["connected"] + self.stats["connect_failures"] < len(self.sims) \
                and time.monotonic() < deadline:
            self.loop.run_once(0.05)

    def _client(self, sim: SimDevice) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sim.device_id,
                             protocol=mqtt.MQTTv5, userdata=sim)
        if sim.username:
            client.username_pw_set(sim.username, sim.password)
        context = self.broker.ssl_context()
        if context is not None:
            client.tls_set_context(context)
        client.will_set(sim.topic(protocol.STATUS), sim.new_connection(), qos=1, retain=True)
        client.on_connect, client.on_publish = self._on_connect, self._on_publish
        self.loop.attach(client)
        try:
            client.connect(self.broker.host, self.broker.port, self.settings.keepalive_s)
        except OSError:
            self.stats["connect_failures"] += 1
        return client

    def _on_connect(self, client, sim, flags, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            self.stats["connect_failures"] += 1
            return
        self.stats["connected"] += 1
        client.subscribe(sim.topic(protocol.CMD), qos=1)
        self._publish(client, sim, protocol.STATUS, sim.status("online"), retain=True)

    def _on_publish(self, client, sim, mid, reason_code, properties) -> None:
        self.inflight -= 1
        self.stats["refused" if getattr(reason_code, "is_failure", False) else "acked"] += 1

    def _publish(self, client, sim, kind: str, payload: bytes, retain: bool = False) -> None:
        info = client.publish(sim.topic(kind), payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.inflight += 1
            self.published[kind] += 1

    def run(self) -> None:
        """Telemetry on schedule until the duration is over, drifting when due."""
        s = self.settings
        start = time.monotonic()
        heap = schedule(len(self.sims), s.interval_s, start, self.rng)
        end, drift_at = start + s.duration_s, (start + s.drift_after_s
                                               if s.drift_after_s is not None else None)
        while (now := time.monotonic()) < end:
            if drift_at is not None and now >= drift_at:
                self._drift()
                drift_at = None
            while heap and heap[0][0] <= now:
                due, i = heapq.heappop(heap)
                self._tick(i)
                heapq.heappush(heap, (due + s.interval_s, i))
            self.loop.run_once(min(0.05, max(0.0, (heap[0][0] if heap else end) - now)))

    def _tick(self, i: int) -> None:
        sim, client = self.sims[i], self.clients[i]
        if not client.is_connected():
            return
        s = self.settings
        self._publish(client, sim, protocol.TELEMETRY, sim.telemetry(s.interval_s, s.inferences))
        if self.rng.random() < s.sample_chance:
            self._publish(client, sim, protocol.SAMPLES, sim.sample())

    def _drift(self) -> None:
        for number, sim in zip(self.numbers, self.sims, strict=True):
            if number < self.drift_cut:
                sim.drifted = True
                self.stats["drifted"] += 1

    def stop(self) -> None:
        """Say offline (stopped), wait for every PUBACK, disconnect."""
        for sim, client in zip(self.sims, self.clients, strict=True):
            if client.is_connected():
                self._publish(client, sim, protocol.STATUS, sim.status("offline", "stopped"),
                              retain=True)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.inflight > 0 and time.monotonic() < deadline:
            self.loop.run_once(0.05)
        for client in self.clients:
            client.disconnect()
        self.loop.run_for(0.2)
        self.loop.close()

    def report(self) -> dict:
        """This shard's report (``SimReport.to_dict`` form)."""
        return SimReport(devices=len(self.sims), connected=self.stats["connected"],
                         published=self.published, acked=self.stats["acked"],
                         refused=self.stats["refused"],
                         connect_failures=self.stats["connect_failures"],
                         drifted=self.stats["drifted"]).to_dict()


def _identities(settings: SimSettings) -> list[tuple[str, str, str | None, str | None]]:
    if settings.credentials:
        return [(c.device_id, c.fleet, c.username, c.password) for c in settings.credentials]
    return [(f"{settings.device_prefix}{i:05d}", settings.fleet, None, None)
            for i in range(settings.devices)]


def _model(settings: SimSettings) -> Model:
    if settings.task == "detection":
        return detector_model()
    if settings.bundle is not None:
        ref, name, version, profile = reference_from_bundle(settings.bundle)
    else:
        ref, name, version, profile = synthetic_reference(), "sim-model", "1", "x86-64"
    return Model(name, version, ref, shares(ref), shares(ref, Drift()), profile)


def run_shard(settings: SimSettings, index: int, count: int) -> dict:
    """Run one shard start to end; returns its report."""
    shard = Shard(settings, index, count)
    shard.connect_all()
    try:
        shard.run()
    finally:
        shard.stop()
    return shard.report()
