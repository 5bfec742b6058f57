"""``cloud serve``'s leader jobs include the drift controller and the outbox, on threads of
their own (unless ``triggers.enabled`` is false): one pass of each fires and runs a
trigger; a command still running never holds up drift scoring. The policy
config: defaults, per-fleet overrides, one-line errors."""

from __future__ import annotations

import math
import re
import time

import pytest

from cloud_sync.config import CloudConfig
from cloud_sync.serve.jobs import Housekeeping, action_jobs, trigger_jobs
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
    jobs = Housekeeping(cfg, engine, lambda: True, trigger_jobs(cfg) + action_jobs(cfg))
    by_name = {name: job for _every, job, name in jobs.jobs}
    for name in ("drift-controller", "actions"):
        jobs._run(by_name[name], name)
    with engine.connect() as conn:
        fired = list_triggers(conn)
    assert len(fired) == 1 and fired[0]["actions"][0]["state"] == "done" and marker.exists()


def test_a_running_command_does_not_hold_up_drift_scoring(engine, make_trigger_cfg, tmp_path):
    import threading

    release = tmp_path / "release"
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": [
        "sh", "-c", f"while [ ! -e {release} ]; do sleep 0.05; done"]}])
    start = math.floor(time.time() / WINDOW_S) * WINDOW_S - 3 * WINDOW_S
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(5, drifted=3), start, 3, WINDOW_S)
    controller = Housekeeping(cfg, engine, lambda: True, trigger_jobs(cfg))
    actions = Housekeeping(cfg, engine, lambda: True, action_jobs(cfg))
    assert {n for *_, n in controller.jobs} == {"drift-controller"}
    controller._run(controller.jobs[0][1], "drift-controller")
    runner = threading.Thread(target=actions._run, args=(actions.jobs[0][1], "actions"))
    runner.start()
    try:
        time.sleep(0.3)  # the command is running now, blocking its thread only
        assert runner.is_alive()
        controller._run(controller.jobs[0][1], "drift-controller")  # returns meanwhile
    finally:
        release.touch()
        runner.join(30)
    with engine.connect() as conn:
        assert list_triggers(conn)[0]["actions"][0]["state"] == "done"


def test_triggers_can_be_switched_off(engine, tmp_path):
    cfg = CloudConfig.from_dict({"data_dir": str(tmp_path), "triggers": {"enabled": False}})
    assert trigger_jobs(cfg) == [] and action_jobs(cfg) == []
    names = {name for _every, _job, name in Housekeeping(cfg, engine, lambda: True).jobs}
    assert names == {"silence", "retention"}


def test_policy_config_defaults_overrides_and_one_line_errors():
    from edge_agent.errors import ConfigError

    cfg = CloudConfig.from_dict({"triggers": {"fleets": {"cams": {"min_devices": 5}}}})
    assert cfg.triggers.policy_for("cams").min_devices == 5
    default = cfg.triggers.policy_for("other")
    assert (default.k, default.n, default.min_devices, default.window_s) == (2, 3, 2, 600.0)
    assert [a.kind for a in default.actions] == ["mqtt"]
    for bad, where in (({"fleets": {"cams": {"kk": 1}}}, "fleets.cams.kk"),
                       ({"default": {"k": 4}}, "k (4) must be <= n (3)"),
                       ({"default": {"actions": [{"kind": "sms"}]}}, "'sms'"),
                       ({"default": {"drift": {"alpha": 2}}}, "alpha")):
        with pytest.raises(ConfigError, match=re.escape(where)):
            CloudConfig.from_dict({"triggers": bad})


def test_the_drift_job_reads_the_fleet_outside_its_write_transaction(engine, make_trigger_cfg):
    """The fleet-sized read (every device's telemetry of the lookback) runs on a
    connection that never writes; the scores and the trigger go in one short write."""
    from sqlalchemy import event

    from cloud_sync.triggers.controller import drift_job

    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": ["true"]}])
    start = math.floor(time.time() / WINDOW_S) * WINDOW_S - 3 * WINDOW_S
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(5, drifted=3), start, 3, WINDOW_S)
    seen: list[tuple[object, str]] = []

    def record(conn, _cursor, statement, _parameters, _context, _many):
        seen.append((conn, " ".join(statement.split()).upper()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        report = drift_job(cfg)(engine, time.time())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(report["fired"]) == 1
    reads = {id(c) for c, s in seen if s.startswith("SELECT") and "FROM MESSAGES" in s}
    writes = {id(c) for c, s in seen  # SQLite's write lock comes with BEGIN IMMEDIATE
              if s.startswith(("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE"))}
    assert reads and writes and not reads & writes
