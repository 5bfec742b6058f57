"""SIGKILL at random moments of an update: the device always restarts on a verified model."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.bundle import trusted_keys
from edge_agent.slots import ModelStore
from tests.edge_agent.agent_helpers import agent_config
from tests.httpserve import FileServer

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


def _spawn(state: Path, pubkey: Path, url: str, bundle: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.edge_agent.update_child", str(state),
                             str(pubkey), url, str(bundle)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.slow
def test_sigkill_at_random_points_of_an_update_always_leaves_a_verified_model(
        tmp_path, keypair, make_onnx_bundle):
    v1, v2 = make_onnx_bundle("1"), make_onnx_bundle("2", seed=1)
    template = tmp_path / "template"
    Agent(agent_config(template, keypair[1], v1)).stop()  # v1 installed
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(v2, www / "v2.ekb")
    server = FileServer(www, bytes_per_s=8000)  # ~0.6 s download: kills land mid-transfer too
    try:
        # one uninterrupted run tells how long a whole update takes here
        full = tmp_path / "full"
        shutil.copytree(template, full)
        start = time.monotonic()
        child = _spawn(full, keypair[1], server.url("v2.ekb"), v2)
        out, _ = child.communicate(timeout=120)
        duration = time.monotonic() - start
        assert "committed 2" in out, out
        rnd = random.Random(1234)
        outcomes = []
        for i in range(KILLS):
            state = tmp_path / f"s{i}"
            shutil.copytree(template, state)
            child = _spawn(state, keypair[1], server.url("v2.ekb"), v2)
            time.sleep(rnd.uniform(0.0, duration))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            outcomes.append(_check_restart(state, keypair[1]))
    finally:
        server.close()
    # kills landed both before the switch (old model serves) and after it (new one does)
    assert set(outcomes) == {"1", "2"}, outcomes


def _check_restart(state: Path, pubkey: Path) -> str:
    """A fresh store on the killed state loads a hash- and golden-verified model."""
    doc = json.loads((state / "current.json").read_text())  # never half-written
    assert doc["current"]["version"] in {"1", "2"}
    store = ModelStore(state, trusted_keys([pubkey]))
    active = store.load_best()
    try:
        assert active.model.golden is not None and active.model.golden.ok
        return active.record.version
    finally:
        active.close()
