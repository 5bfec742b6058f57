"""Updates of detectors: the update check and probation judge detections by the task's
parity rule (golden pair post-processed on both sides), never by argmax."""

from __future__ import annotations

import time

import pytest

from edge_agent.agent import Agent
from edge_agent.golden import save_arrays
from tests.edge_agent.agent_helpers import agent_config, results, update_cmd
from tests.edge_agent.task_bundles import (
    LABELS,
    golden_arrays,
    onnx_detector,
    pack_task,
    reference_images,
    rewrite,
)
from tests.edge_agent.test_updates import offer


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, keypair):
    """Detector bundles v1 and v2 (two seeds), and v3 whose golden boxes moved 6 pixels."""
    folder = tmp_path_factory.mktemp("detectors")
    made = {v: pack_task(onnx_detector(folder / f"v{v}.onnx", seed=int(v)),
                         folder / f"v{v}.ekb", keypair, "detection", "yolov8", version=v,
                         labels=LABELS)
            for v in ("1", "2", "3")}
    outputs = golden_arrays(made["3"], keypair)
    outputs[0] = outputs[0].copy()
    outputs[0][:, :2] += 6.0
    (folder / "moved.npz").write_bytes(save_arrays(outputs))
    made["3"] = rewrite(made["3"], keypair, folder / "v3-moved.ekb",
                        payloads={"golden_output": folder / "moved.npz"})
    return made


def test_a_detector_update_passes_probation_on_detections(tmp_path, keypair, detectors,
                                                          served_dir):
    cfg = agent_config(tmp_path / "s", keypair[1], detectors["1"], profile="x86-64")
    with Agent(cfg) as agent:
        agent.commands.handle(update_cmd(offer(served_dir, detectors["2"]), detectors["2"], "2"))
        assert results(agent)[-1]["detail"]["phase"] == "probation"
        for i in range(30):
            assert "detections" in agent.predict(reference_images(1, seed=i))
        agent.commands.check_probation()
        final = results(agent)[-1]
    assert final["ok"] and final["detail"]["phase"] == "committed", final


def test_an_update_whose_detections_disagree_with_its_golden_pair_is_refused(
        tmp_path, keypair, detectors, served_dir):
    cfg = agent_config(tmp_path / "s", keypair[1], detectors["1"], profile="x86-64")
    with Agent(cfg) as agent:
        agent.commands.handle(update_cmd(offer(served_dir, detectors["3"]), detectors["3"], "3"))
        result = results(agent)[-1]
        assert not result["ok"] and agent.model_info()["version"] == "1"
    assert "golden check failed: detections of 1 golden image(s) disagree by the parity rule" \
        in result["error"]


def test_probation_without_traffic_probes_the_golden_pair_by_the_parity_rule(
        tmp_path, keypair, detectors, served_dir):
    cfg = agent_config(tmp_path / "s", keypair[1], detectors["1"], profile="x86-64",
                       update={"probation_seconds": 0.3, "probation_inferences": 1000})
    with Agent(cfg) as agent:
        agent.commands.handle(update_cmd(offer(served_dir, detectors["2"]), detectors["2"], "2"))
        time.sleep(0.4)
        agent.commands.check_probation()
        assert results(agent)[-1]["detail"]["phase"] == "committed"
