"""Regression tests from the agent review: each case once broke a promise of the agent."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from edge_agent.agent import Agent, InputError
from tests.edge_agent.agent_helpers import agent_config, command, results, update_cmd
from tests.edge_agent.test_updates import drive, offer


def _updated(tmp_path, keypair, make_onnx_bundle, served_dir, **cfg):
    """An agent that installed v1 and switched to v2, now in probation."""
    agent = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"), **cfg))
    v2 = make_onnx_bundle("2", nan_above=40.0)
    agent.commands.handle(update_cmd(offer(served_dir, v2), v2, "2"))
    assert results(agent)[-1]["detail"]["phase"] == "probation"
    return agent


def test_rollback_to_a_broken_previous_keeps_the_serving_model(tmp_path, keypair,
                                                                make_onnx_bundle, served_dir):
    agent = _updated(tmp_path, keypair, make_onnx_bundle, served_dir)
    prev = agent.store.previous()
    (agent.store.models / prev.slot / "bundle.ekb").write_bytes(b"rotted")  # disk bit-rot
    agent.predict(np.full((1, 1, 8, 8), 2.0, np.float32))  # NaN: probation wants a rollback
    with pytest.raises(Exception, match="cannot roll back"):
        agent.commands.check_probation()
    final = results(agent)[-1]
    assert not final["ok"] and final["detail"]["phase"] == "rollback_failed"
    assert agent.model_info()["version"] == "2" and agent.probation is None
    assert agent.store.current().version == "2"  # the pointer still names a working model
    agent.stop()
    with Agent(agent_config(tmp_path / "state", keypair[1])) as again:
        assert again.model_info()["version"] == "2"


def test_manual_rollback_during_probation_ends_the_update(tmp_path, keypair, make_onnx_bundle,
                                                          served_dir):
    with _updated(tmp_path, keypair, make_onnx_bundle, served_dir) as agent:
        update_id = results(agent)[-1]["cmd_id"]
        agent.commands.handle(command("rollback"))
        final, answer = results(agent)[-2:]
        assert final["cmd_id"] == update_id and final["detail"]["phase"] == "rolled_back"
        assert answer["type"] == "rollback" and answer["ok"]
        assert agent.model_info()["version"] == "1" and agent.probation is None


def test_restart_in_probation_keeps_the_update_cmd_id(tmp_path, keypair, make_onnx_bundle,
                                                      served_dir, rng):
    agent = _updated(tmp_path, keypair, make_onnx_bundle, served_dir)
    update_id = results(agent)[-1]["cmd_id"]
    agent.stop()
    with Agent(agent_config(tmp_path / "state", keypair[1])) as again:
        assert again.probation is not None and again.serving.probation_cmd == update_id
        drive(again, 40, rng, scale=0.0)
        assert results(again)[-1]["cmd_id"] == update_id


def test_concurrent_tflite_predictions_are_correct(tmp_path, keypair, tiny_tflite, rng):
    from export.pack import PackRequest, pack_model
    from hardware_profiles import get_profile

    bundle = tmp_path / "t.ekb"
    pack_model(PackRequest(model_file=tiny_tflite, profile=get_profile("x86-64"), name="t",
                           version="1", key_file=keypair[0], out=bundle))
    xs = [rng.standard_normal((1, 1, 8, 8)).astype(np.float32) for _ in range(4)]
    with Agent(agent_config(tmp_path / "s", keypair[1], bundle)) as agent:
        expected = [agent.predict(x)[0] for x in xs]
        errors: list[BaseException] = []

        def hammer(i: int) -> None:
            try:
                for _ in range(300):
                    assert np.array_equal(agent.predict(xs[i])[0], expected[i])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:1]


def test_huge_error_text_is_cut_and_the_worker_keeps_answering(tmp_path, keypair,
                                                               make_onnx_bundle):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        url = "http://127.0.0.1:9/" + "a b" * 180_000  # ~540 KB, echoed by the errors
        agent.commands.handle(update_cmd(url, make_onnx_bundle("2", seed=1), "2"))
        res = results(agent)[-1]
        assert not res["ok"] and len(res["error"]) <= 1001
        agent.commands.handle(command("ping"))
        assert results(agent)[-1]["ok"]


@pytest.mark.parametrize("args", [{"telemetry_interval_s": 1e300}, {"low_confidence": 3.0},
                                  {"sample_max_bytes": 1e9}])
def test_out_of_range_settings_are_refused(tmp_path, keypair, make_onnx_bundle, args):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(command("set-config", **args))
        res = results(agent)[-1]
        assert not res["ok"] and "must be between" in res["error"]
        assert agent.serving.settings.telemetry_interval_s == 3600.0


def test_pointer_survives_concurrent_writers(tmp_path, keypair, make_onnx_bundle):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        store, record = agent.store, agent.store.current()
        errors: list[BaseException] = []

        def write(fn) -> None:
            try:
                for _ in range(200):
                    fn()
                    json.loads((store.root / "current.json").read_text())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(store.end_probation,)),
                   threading.Thread(target=write, args=(lambda: store.switch(record, False),))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:1]


def test_missing_config_bundle_does_not_stop_an_installed_agent(tmp_path, keypair,
                                                                 make_onnx_bundle):
    flashed = tmp_path / "opt.ekb"
    shutil.copy(make_onnx_bundle("1"), flashed)
    Agent(agent_config(tmp_path / "s", keypair[1], flashed)).stop()
    flashed.unlink()
    with Agent(agent_config(tmp_path / "s", keypair[1], flashed)) as agent:
        assert agent.model_info()["version"] == "1"


def test_rejected_update_frees_its_slot_and_status(tmp_path, keypair, make_onnx_bundle,
                                                   served_dir):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        slow = make_onnx_bundle("2", slow=200)
        agent.commands.handle(update_cmd(offer(served_dir, slow), slow, "2"))
        assert "latency regression" in results(agent)[-1]["error"]
        assert [p.name for p in agent.store.models.iterdir()] == [agent.store.current().slot]
        assert agent._status[0] == "online"


def test_empty_batch_is_refused(tmp_path, keypair, make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))
    with Agent(cfg) as agent, pytest.raises(InputError, match="empty batch"):
        agent.predict(np.zeros((0, 1, 8, 8), np.float32))


def test_sample_that_cannot_be_queued_does_not_fail_the_inference(tmp_path, keypair,
                                                                   make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), low_confidence=1.0)
    with Agent(cfg) as agent:
        agent.outbox.close()  # the outbox refuses every put from now on
        assert agent.predict(np.zeros((1, 1, 8, 8), np.float32))[0].shape == (1, 10)


@pytest.mark.parametrize("body, headers", [
    (b'{"inputs": 5}', {"Content-Type": "application/json"}),
    (b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}),
    (b"{}", {"Content-Type": "application/json", "Content-Length": "lots"}),
])
def test_odd_http_bodies_get_400_not_a_dropped_connection(tmp_path, keypair, make_onnx_bundle,
                                                          body, headers):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), http="127.0.0.1:0")
    with Agent(cfg) as agent:
        agent.start()
        port = agent.http.server_address[1]
        if "Content-Length" in headers:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("POST", "/v1/predict")
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            status = conn.getresponse().status
        else:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", body, headers)
            try:
                urllib.request.urlopen(req, timeout=10)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
        assert status == 400


def test_a_runtime_error_with_an_empty_message_is_still_one_clear_line(tmp_path, keypair,
                                                                       make_onnx_bundle):
    from edge_agent.errors import EdgekitError

    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        class Broken:
            def run(self, feeds):
                raise RuntimeError()

            def close(self):
                pass

        agent.active.model.session = Broken()
        with pytest.raises(EdgekitError, match="inference failed: RuntimeError"):
            agent.predict(np.zeros((1, 1, 8, 8), np.float32))
