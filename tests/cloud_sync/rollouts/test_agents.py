"""Rollouts with real agents on a real broker and a real ``cloud serve``: a good version is
promoted through every wave; a useless one (loads, passes its golden check and the
device's probation, answers a flat softmax) is halted on model health and rolled back
with the rest never receiving it; a device whose update fails counts against the canary."""

from __future__ import annotations

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
