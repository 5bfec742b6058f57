"""One owner of the serving state: runtime settings survive updates, rollbacks and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.errors import ProtocolError
from edge_agent.serving import RuntimeSettings
from tests.edge_agent.agent_helpers import agent_config, command, results, update_cmd

SAMPLING = {"sample_rate_per_min": 42.0, "low_confidence": 0.9, "sample_max_bytes": 2048.0}


def _offer(served_dir, bundle: Path) -> str:
    folder, server = served_dir
    (folder / "b.ekb").write_bytes(Path(bundle).read_bytes())
    return server.url("b.ekb")


def _sampling_in_force(agent: Agent) -> tuple:
    s = agent.sampler
    return s.bucket._rate * 60.0, s.low_confidence, s.max_bytes


def test_set_config_sampling_survives_update_rollback_and_restart(tmp_path, keypair,
                                                                  make_onnx_bundle, served_dir):
    """Regression: sampling settings used to revert to the config file's after an update."""
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))
    expected = (42.0, 0.9, 2048)
    with Agent(cfg) as agent:
        agent.commands.handle(command("set-config", **SAMPLING))
        assert results(agent)[-1]["ok"] and _sampling_in_force(agent) == expected
        v2 = make_onnx_bundle("2", seed=1)
        agent.commands.handle(update_cmd(_offer(served_dir, v2), v2, "2"))
        assert agent.model_info()["version"] == "2"
        assert _sampling_in_force(agent) == expected
        agent.commands.handle(command("rollback"))
        assert agent.model_info()["version"] == "1"
        assert _sampling_in_force(agent) == expected
    with Agent(cfg) as agent:  # restart: the saved settings win over the config file's
        assert _sampling_in_force(agent) == expected
        assert agent.serving.settings.telemetry_interval_s == cfg.telemetry_interval_s


def test_a_swap_gives_fresh_metrics_and_returns_the_old_model(tmp_path, keypair,
                                                              make_onnx_bundle, rng):
    with Agent(agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.predict(rng.standard_normal((1, 1, 8, 8)))
        old_metrics = agent.metrics
        other = agent.store.open_slot(agent.store.current())
        replaced = agent.serving.swap(other)
        replaced.close()
        assert agent.metrics is not old_metrics and agent.active is other
        assert agent.metrics.close_window().inferences == 0


@pytest.mark.parametrize("changes, error", [
    ({"telemetry_interval_s": 0.0}, "between"), ({"low_confidence": -1}, "between"),
    ({"colour": 1.0}, "unknown setting"), ({"sample_rate_per_min": True}, "between")])
def test_runtime_settings_refuse_bad_values(changes, error):
    base = RuntimeSettings(10.0, 6.0, 1024, 0.5)
    with pytest.raises(ProtocolError, match=error):
        base.changed(changes)
