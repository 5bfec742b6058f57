"""Rollouts with real agents on a real broker and a real ``cloud serve``: a good version is
promoted through every wave; a useless one (loads, passes its golden check and the
device's probation, answers a flat softmax) is halted on model health and rolled back
with the rest never receiving it; a device whose update fails counts against the canary."""

from __future__ import annotations

import time

import pytest

from tests.cloud_sync.rollouts.fleet import Fleet, make_uniform_onnx, pack, rows, wait_for

DEVICES = ["d0", "d1", "d2", "d3"]
DONE = ("done", "rolled_back")


@pytest.fixture()
def fleet(tmp_path, capsys, keypair, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path / "data"))
    made = Fleet(tmp_path, capsys, keypair, DEVICES)
    yield made
    made.stop()


def _engine(fleet):
    from cloud_sync.store import open_store

    return open_store(fleet.db_url)


def _ready(fleet, engine) -> None:
    wait_for(lambda: len(rows(engine, "SELECT DISTINCT device_id FROM messages WHERE kind = "
                                      "'telemetry' AND inferences > 0 AND model_version = '1'"))
             == len(DEVICES), 90, "telemetry with inferences from every agent",
             lambda: rows(engine, "SELECT id, state FROM devices"))


def _status(fleet, rid: int) -> dict | None:
    """The rollout through ``edgekit rollout status``; None while the API is down."""
    try:
        return fleet.rollout("status", str(rid))
    except AssertionError:
        return None


def _finish(fleet, rid: int, timeout: float = 90) -> dict:
    return wait_for(lambda: (d := _status(fleet, rid)) is not None and d["state"] in DONE
                    and d, timeout, f"rollout {rid} to finish",
                    lambda: (_status(fleet, rid) or {}).get("timeline"))


def _start(fleet, version: str, canary: str) -> int:
    return fleet.rollout("start", "--model", "tiny", "--version", version, "--fleet", "lab",
                         "--canary", canary, "--bake", "3", "--waves", "50,100")["id"]


@pytest.mark.slow
def test_a_good_version_is_promoted_through_every_wave(fleet, make_onnx_bundle):
    fleet.start(make_onnx_bundle("1"))
    engine = _engine(fleet)
    try:
        _ready(fleet, engine)
        fleet.publish(make_onnx_bundle("2"))  # the same weights: as healthy as v1
        doc = _finish(fleet, _start(fleet, "2", "1"))
        assert doc["state"] == "done", (doc["verdict"]["reasons"], doc["devices"])
        assert [e["state"] for e in doc["timeline"]] == [
            "pending", "canary", "baking", "wave", "baking", "wave", "baking", "done"]
        assert {d["state"] for d in doc["devices"]} == {"committed"}
        wait_for(lambda: {r[0] for r in rows(engine, "SELECT model_version FROM devices")}
                 == {"2"}, 30, "every device reporting v2")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_useless_version_is_halted_on_health_and_rolled_back(fleet, make_onnx_bundle,
                                                              tmp_path, keypair):
    fleet.start(make_onnx_bundle("1"))
    engine = _engine(fleet)
    try:
        _ready(fleet, engine)
        fleet.publish(pack(make_uniform_onnx(tmp_path / "flat.onnx"), "2", keypair[0],
                           tmp_path / "flat.ekb"))
        doc = _finish(fleet, _start(fleet, "2", "1"))
        assert doc["state"] == "rolled_back", doc["timeline"]
        verdict = doc["verdict"]
        assert verdict["kind"] == "health", verdict
        assert verdict["figures"]["confidence_drop"] > 0.15, verdict
        states = {d["device_id"]: d["state"] for d in doc["devices"]}
        assert states == {"d0": "rollback_confirmed", "d1": "skipped", "d2": "skipped",
                          "d3": "skipped"}
        never = {d["cmd_id"] for d in doc["devices"] if d["device_id"] != "d0"}
        answered = {r[0] for r in rows(engine, "SELECT payload FROM messages WHERE kind = "
                                               "'cmd/result'")}
        assert not any(cmd in str(a) for a in answered for cmd in never)
        wait_for(lambda: {r[0] for r in rows(engine, "SELECT model_version FROM devices")}
                 == {"1"}, 30, "every device back on v1")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_device_whose_update_fails_counts_against_the_canary(fleet, make_onnx_bundle):
    fleet.start(make_onnx_bundle("1"), broken=("d1",))
    engine = _engine(fleet)
    try:
        _ready(fleet, engine)
        fleet.publish(make_onnx_bundle("2"))
        doc = _finish(fleet, _start(fleet, "2", "2"))
        assert doc["state"] == "rolled_back", doc["timeline"]
        verdict = doc["verdict"]
        assert verdict["kind"] == "failures" and verdict["figures"]["failed_devices"] == ["d1"]
        states = {d["device_id"]: d["state"] for d in doc["devices"]}
        assert states["d1"] == "failed" and states["d2"] == states["d3"] == "skipped"
        assert states["d0"] in ("rollback_confirmed", "skipped", "failed"), states
    finally:
        engine.dispose()


@pytest.mark.slow
def test_serve_killed_during_the_bake_resumes_the_rollout(fleet, make_onnx_bundle):
    fleet.start(make_onnx_bundle("1"))
    engine = _engine(fleet)
    try:
        _ready(fleet, engine)
        fleet.publish(make_onnx_bundle("2"))
        rid = _start(fleet, "2", "1")
        wait_for(lambda: rows(engine, "SELECT id FROM rollouts WHERE state = 'baking'"), 60,
                 "the canary baking")
        fleet.serve.kill()  # SIGKILL: no clean shutdown, the leader lock is left to expire
        fleet.serve.wait(10)
        fleet.start_serve()
        doc = _finish(fleet, rid, timeout=120)
        assert doc["state"] == "done", (doc["verdict"]["reasons"], doc["devices"])
        assert {d["state"] for d in doc["devices"]} == {"committed"}
        commits = [r[0] for r in rows(engine, "SELECT payload FROM messages WHERE kind = "
                                              "'cmd/result'") if "committed" in str(r[0])]
        assert len(commits) == len(DEVICES)  # each device installed once
        states = [e["state"] for e in doc["timeline"]]
        assert states.count("canary") == 1 and states.count("done") == 1
    finally:
        engine.dispose()


def _publish_as(fleet, username: str, password: str | None, topic: str, payload: bytes) -> None:
    """One QoS 1 message on the fleet's broker with this login."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"test-{username}-{time.monotonic_ns()}")
    client.username_pw_set(username, password)
    host, port = fleet.broker.url.split("//")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), topic
    finally:
        client.disconnect()
        client.loop_stop()


def _results(engine, cmd_id: str) -> list[dict]:
    import json

    docs = [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows(
        engine, "SELECT payload FROM messages WHERE kind = 'cmd/result' ORDER BY id")]
    return [d for d in docs if d.get("cmd_id") == cmd_id]


@pytest.mark.slow
def test_forged_results_and_stale_rollbacks_change_nothing(fleet, make_onnx_bundle, tmp_path):
    """d0 (the canary) answers d1's update cmd_id on its own topic before d1 is sent it:
    d1 counts only its own answers. Then a rollback naming v1, which no device runs any
    more, reaches the real d0 agent: refused, d0 stays on v2."""
    from cloud_sync.config import CloudConfig
    from cloud_sync.rollouts.commands import Outgoing, publish, rollback_doc
    from edge_agent import protocol

    fleet.start(make_onnx_bundle("1"))
    engine = _engine(fleet)
    try:
        _ready(fleet, engine)
        fleet.publish(make_onnx_bundle("2"))
        rid = fleet.rollout("start", "--model", "tiny", "--version", "2", "--devices",
                            "d0,d1", "--canary", "1", "--bake", "3", "--waves", "100")["id"]
        d1_cmd = next(d["cmd_id"] for d in fleet.rollout("status", str(rid))["devices"]
                      if d["device_id"] == "d1")
        forged = protocol.CommandResult(
            device_id="d0", seq=10 ** 9, ts=time.time(), cmd_id=d1_cmd, type="update", ok=True,
            detail={"phase": "committed", "final": True, "version": "2", "forged": True})
        _publish_as(fleet, "d0", fleet.passwords["d0"],
                    protocol.topic("lab", "d0", protocol.CMD_RESULT), forged.to_json())
        wait_for(lambda: _results(engine, d1_cmd), 30, "the forged result stored")
        doc = _finish(fleet, rid)
        assert doc["state"] == "done", (doc["verdict"], doc["devices"])
        d1 = next(d for d in doc["devices"] if d["device_id"] == "d1")
        assert d1["state"] == "committed" and "forged" not in d1["result"]["detail"], d1
        cfg = CloudConfig(data_dir=tmp_path / "data", broker=fleet.broker.url)
        stale = rollback_doc("stale-rb-1", time.time(), 600, "1")
        assert publish(cfg, [Outgoing("lab", "d0", stale)], time.time()) == 1
        answer = wait_for(lambda: _results(engine, "stale-rb-1"), 30, "d0's answer")[-1]
        assert not answer["ok"] and answer["detail"]["running_version"] == "2", answer
        assert "leave version 1, but this device runs version 2" in answer["error"]
        newer = wait_for(  # telemetry d0 sent after it answered: still v2, as d0 reports
            lambda: rows(engine, "SELECT model_version FROM messages WHERE device_id = 'd0' "
                                 "AND kind = 'telemetry' AND ts > :ts", ts=answer["ts"]),
            30, "telemetry from d0 newer than its rollback answer",
            lambda: rows(engine, "SELECT * FROM devices WHERE id = 'd0'"))
        assert {version for (version,) in newer} == {"2"}, newer
    finally:
        engine.dispose()
