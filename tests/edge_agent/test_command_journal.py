"""Commands are journaled: never run twice, resumed after a restart, refused when stale."""

from __future__ import annotations

import time

from edge_agent.agent import Agent
from edge_agent.command_journal import ANSWERED, PENDING, CommandJournal
from edge_agent.outbox import Outbox
from tests.edge_agent.agent_helpers import agent_config, command_with, results


def test_a_repeated_cmd_id_gets_the_original_result_and_runs_once(tmp_path, keypair,
                                                                   make_onnx_bundle):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(command_with("set-config", cmd_id="c-1", telemetry_interval_s=5))
        agent.commands.handle(command_with("set-config", cmd_id="c-2", telemetry_interval_s=7))
        # the cloud sends c-1 again (e.g. it did not see the answer): not applied again
        agent.commands.handle(command_with("set-config", cmd_id="c-1", telemetry_interval_s=5))
        first, second, again = results(agent)
        assert agent.serving.settings.telemetry_interval_s == 7
        assert again == first and again["seq"] == first["seq"]
        assert second["cmd_id"] == "c-2"


def test_the_record_of_answered_commands_survives_a_restart(tmp_path, keypair,
                                                             make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))
    with Agent(cfg) as agent:
        agent.commands.handle(command_with("ping", cmd_id="p-1"))
        original = results(agent)[-1]
    with Agent(cfg) as agent:
        before = len(results(agent))
        agent.commands.handle(command_with("ping", cmd_id="p-1"))
        assert len(results(agent)) == before + 1 and results(agent)[-1] == original
        assert agent.journal.state("p-1") == ANSWERED


def test_a_journaled_command_not_yet_answered_runs_at_the_next_start(tmp_path, keypair,
                                                                      make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))
    with Agent(cfg) as agent:  # received and journaled, then the device died
        assert agent.commands.receive(command_with("set-config", cmd_id="late",
                                                   telemetry_interval_s=9))
        assert agent.journal.state("late") == PENDING
    agent = Agent(cfg)
    try:
        agent.start()
        deadline = time.monotonic() + 10
        while agent.journal.state("late") != ANSWERED and time.monotonic() < deadline:
            time.sleep(0.05)
        res = [r for r in results(agent) if r["cmd_id"] == "late"]
        assert len(res) == 1 and res[0]["ok"], res
        assert agent.serving.settings.telemetry_interval_s == 9
    finally:
        agent.stop()


def test_an_expired_command_is_answered_with_an_error_and_not_run(tmp_path, keypair,
                                                                  make_onnx_bundle):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(command_with("set-config", expires_at=time.time() - 60,
                                           telemetry_interval_s=5))
        res = results(agent)[-1]
        assert not res["ok"] and "expired" in res["error"] and "not run" in res["error"]
        assert agent.serving.settings.telemetry_interval_s == 3600.0
        agent.commands.handle(command_with("set-config", expires_at=time.time() + 60,
                                           telemetry_interval_s=5))
        assert results(agent)[-1]["ok"] and agent.serving.settings.telemetry_interval_s == 5


def test_the_journal_records_a_command_once(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite")
    try:
        journal = CommandJournal(outbox)
        assert journal.record("a", "ping", b"{}").state == "new"
        assert journal.record("a", "ping", b"{}").state == PENDING
        assert journal.pending() == [("a", b"{}")]
    finally:
        outbox.close()


def test_commands_turned_away_by_a_full_queue_still_run_once(tmp_path, keypair,
                                                            make_onnx_bundle):
    agent = Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1")))
    try:
        agent.start()
        with agent.commands.lock:  # the worker is busy (e.g. a long update)
            for i in range(100):
                agent.on_message("cmd", command_with("ping", cmd_id=f"p-{i}"))
        deadline = time.monotonic() + 30
        while len(results(agent)) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        ids = [r["cmd_id"] for r in results(agent)]
        assert sorted(ids) == sorted(f"p-{i}" for i in range(100))  # each exactly once
    finally:
        agent.stop()
