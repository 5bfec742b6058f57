"""``cloud serve``'s leader jobs include the drift controller and the outbox (unless
``triggers.enabled`` is false): one pass of each fires and runs a trigger."""

from __future__ import annotations

import math
import time

from cloud_sync.config import CloudConfig
from cloud_sync.serve.jobs import Housekeeping, trigger_jobs
from cloud_sync.store import transaction
from cloud_sync.triggers.queries import list_triggers
from tests.cloud_sync.triggers.conftest import WINDOW_S
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows


def test_leader_jobs_score_fire_and_act(engine, make_trigger_cfg, tmp_path):
    marker = tmp_path / "ran"
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": ["touch", str(marker)]}])
    start = math.floor(time.time() / WINDOW_S) * WINDOW_S - 3 * WINDOW_S
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(5, drifted=3), start, 3, WINDOW_S)
    jobs = Housekeeping(cfg, engine, lambda: True, trigger_jobs(cfg))
    by_name = {name: job for _every, job, name in jobs.jobs}
    for name in ("drift-controller", "actions"):
        jobs._run(by_name[name], name)
    with engine.connect() as conn:
        fired = list_triggers(conn)
    assert len(fired) == 1 and fired[0]["actions"][0]["state"] == "done" and marker.exists()


def test_triggers_can_be_switched_off(engine, tmp_path):
    cfg = CloudConfig.from_dict({"data_dir": str(tmp_path), "triggers": {"enabled": False}})
    assert trigger_jobs(cfg) == []
    names = {name for _every, _job, name in Housekeeping(cfg, engine, lambda: True).jobs}
    assert names == {"silence", "retention"}
