"""Child process for the SIGKILL-during-update test: install an update, then pass probation."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge_agent.agent import Agent
from tests.edge_agent.agent_helpers import agent_config, update_cmd


def main(state: str, pubkey: str, url: str, bundle: str) -> None:
    agent = Agent(agent_config(Path(state), Path(pubkey),
                               update={"probation_inferences": 10**9, "probation_seconds": 1.5}))
    print("started", flush=True)
    agent.commands.handle(update_cmd(url, Path(bundle), "2"))
    rng = np.random.default_rng(0)
    while agent.probation is not None:
        agent.predict(rng.standard_normal((1, 1, 8, 8)))
        agent.commands.check_probation()
        time.sleep(0.005)
    print("committed", agent.model_info()["version"], flush=True)
    agent.stop()


if __name__ == "__main__":
    main(*sys.argv[1:5])
