"""Rollouts that cannot fight each other (issue 17, items 5 and 8), on SQLite and
PostgreSQL: one open rollout per device (refused with the open one's name, also when two
creates race), held devices released when a rollout ends, a migration that copes with
rollouts that already overlap, cmd/results that count only from the device the command
was sent to, rollback commands that name the version to leave, and the resend map that
forgets what it no longer needs."""

from __future__ import annotations

import contextlib
import threading

import pytest
import sqlalchemy as sa

from cloud_sync.rollouts import commands
from cloud_sync.rollouts import store as rollout_store
from cloud_sync.rollouts.machine import controller_step
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.store import (
    RolloutConflict,
    abort_rollout,
    create_rollout,
    rollout_doc,
)
from cloud_sync.store import create_engine, transaction, upgrade
from cloud_sync.store.schema import messages, rollout_devices, rollouts
from tests.cloud_sync.rollouts.helpers import add_devices, publish_model, result

POLICY = RolloutPolicy(canary_count=1, waves=[100], bake_s=10, heartbeat_s=5)


def _url(sha, ttl, sent_at):
    return f"http://cloud/a/{sha}"


def _step(engine, now):
    with transaction(engine) as conn:
        return controller_step(conn, _url, now)


def _create(engine, devices=None, fleet=None, version="2"):
    with transaction(engine) as conn:
        return create_rollout(conn, "tiny", version, fleet, devices, POLICY, 0.0)


def _devices(engine, rid):
    with engine.connect() as conn:
        return {d["device_id"]: d for d in rollout_doc(conn, rid)["devices"]}


@pytest.fixture()
def fleet(engine):
    with transaction(engine) as conn:
        add_devices(conn, ["a", "b", "c"])
        publish_model(conn)
    return engine


def test_a_second_rollout_over_held_devices_is_refused_naming_the_open_one(fleet):
    first = _create(fleet, devices=["a", "b"])
    with pytest.raises(RolloutConflict, match=rf"rollout {first} \(tiny 2, pending\) holds a, b"
                       rf".*edgekit rollout abort {first}"):
        _create(fleet, fleet="f1")
    with pytest.raises(RolloutConflict, match=f"rollout {first}"):
        _create(fleet, devices=["b"])
    other = _create(fleet, devices=["c"])  # devices nobody holds: accepted
    with fleet.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM rollouts")).scalar() == 2
        assert {r.device_id for r in conn.execute(sa.select(rollout_devices).where(
            rollout_devices.c.rollout_id == other))} == {"c"}


def _bare_rollout(conn, rid):
    conn.execute(sa.insert(rollouts).values(
        id=rid, model_name="tiny", model_version="2", fleet="f1", target={}, policy={},
        state="pending", wave=0, phase_started_at=0.0, created_at=0.0, updated_at=7.0))


def _bare_device(conn, rid, device):
    conn.execute(sa.insert(rollout_devices).values(
        rollout_id=rid, device_id=device, wave=0, cmd_id=f"c{rid}{device}", state="sent",
        updated_at=0.0))


def test_the_database_refuses_a_second_open_row_for_a_device(fleet):
    """The guard is the unique partial index, not only the library's check."""
    _create(fleet, devices=["a"])
    with pytest.raises(sa.exc.IntegrityError), transaction(fleet) as conn:
        _bare_rollout(conn, 50)
        _bare_device(conn, 50, "a")
    with transaction(fleet) as conn:
        conn.execute(sa.update(rollout_devices).values(released_at=1.0))
        _bare_rollout(conn, 50)
        _bare_device(conn, 50, "a")  # released rows do not count


def test_devices_are_free_again_once_the_rollout_ends(fleet):
    first = _create(fleet, devices=["a"])
    _step(fleet, 1.0)
    _step(fleet, 2.0)  # sent to a
    assert all(d["released_at"] is None for d in _devices(fleet, first).values())
    with transaction(fleet) as conn:
        result(conn, "a", _sent_to(fleet, first, "a")["cmd_id"], phase="committed", ts=2.5)
        abort_rollout(conn, first, 3.0)
    _step(fleet, 4.0)
    rollback = next(o for o in _step(fleet, 5.0).outgoing if o.doc["type"] == "rollback")
    with transaction(fleet) as conn:
        result(conn, "a", rollback.cmd_id, phase=None, ts=5.5, ctype="rollback")
    _step(fleet, 6.0)
    with fleet.connect() as conn:
        assert rollout_doc(conn, first)["state"] == "rolled_back"
    assert all(d["released_at"] is not None for d in _devices(fleet, first).values())
    second = _create(fleet, fleet="f1")
    assert set(_devices(fleet, second)) == {"a", "b", "c"}


def test_two_creates_at_once_cannot_both_win(fleet, monkeypatch):
    """The database decides, not the library's check: that check (``_refuse_held`` before
    the inserts) lets both through here, as it would two creates whose checks both ran
    before either inserted. On PostgreSQL both transactions are open and past it before
    either inserts: the second insert waits for the first transaction, then fails on the
    unique index. On SQLite the second transaction begins only after the first commits;
    its check would refuse it, so only the index can. The loser's error still names the
    winner (``_refuse_held`` after the index refused the insert, which stays real)."""
    barrier = threading.Barrier(2)
    real_insert, real_refuse = rollout_store._insert_devices, rollout_store._refuse_held
    checked = threading.local()
    calls: list[str] = []

    def refuse_only_after_the_index(conn, ids):
        if not getattr(checked, "once", False):  # each create's check, before its inserts
            checked.once = True
            calls.append("check skipped")
            return
        calls.append("named after the index refused")
        real_refuse(conn, ids)

    def insert_after_both_checked(conn, values):
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=3)  # SQLite: the other thread is still waiting to BEGIN
        real_insert(conn, values)
    monkeypatch.setattr(rollout_store, "_refuse_held", refuse_only_after_the_index)
    monkeypatch.setattr(rollout_store, "_insert_devices", insert_after_both_checked)
    outcomes: list[object] = []

    def create(devices):
        try:
            outcomes.append(_create(fleet, devices=devices))
        except RolloutConflict as exc:
            outcomes.append(exc)
    threads = [threading.Thread(target=create, args=(ids,)) for ids in (["a", "b"], ["b", "c"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [o for o in outcomes if isinstance(o, int)]
    lost = [o for o in outcomes if isinstance(o, RolloutConflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert f"rollout {won[0]} (tiny 2" in str(lost[0]) and "holds b" in str(lost[0])
    assert sorted(calls) == ["check skipped", "check skipped", "named after the index refused"]
    with fleet.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM rollouts")).scalar() == 1
        assert conn.execute(sa.text("SELECT COUNT(*) FROM rollout_devices")).scalar() == 2


def test_the_migration_keeps_the_oldest_of_overlapping_open_rollouts(db_url):
    """A database from before the guard may hold overlapping open rollouts: upgrading
    keeps the oldest one's hold and still builds the index."""
    engine = create_engine(db_url)
    try:
        upgrade(engine, "0006")
        with transaction(engine) as conn:
            for rid, state in ((1, "baking"), (2, "pending"), (3, "done")):
                _bare_rollout(conn, rid)
                conn.execute(sa.update(rollouts).where(rollouts.c.id == rid)
                             .values(state=state))
                _bare_device(conn, rid, "a")
        upgrade(engine)
        with engine.connect() as conn:
            released = {r.rollout_id: r.released_at for r in conn.execute(
                sa.select(rollout_devices.c.rollout_id, rollout_devices.c.released_at))}
        assert released[1] is None and released[2] is not None and released[3] == 7
    finally:
        engine.dispose()


def _sent_to(engine, rid, device):
    return _devices(engine, rid)[device]


def test_a_result_counts_only_from_the_device_the_command_was_sent_to(fleet):
    rid = _create(fleet, devices=["a", "b"])
    with transaction(fleet) as conn:  # both in the canary
        conn.execute(sa.update(rollout_devices).values(wave=0))
    _step(fleet, 1.0)
    _step(fleet, 2.0)
    a_cmd = _sent_to(fleet, rid, "a")["cmd_id"]
    with transaction(fleet) as conn:  # b answers a's command: on b's own topic
        result(conn, "b", a_cmd, phase="probation", ts=2.5)
        result(conn, "b", a_cmd, phase="committed", ts=2.5)
    _step(fleet, 3.0)
    devs = _devices(fleet, rid)
    assert devs["a"]["state"] == "sent" and devs["a"]["result"] is None
    assert devs["b"]["state"] == "sent"
    with transaction(fleet) as conn:  # a's own answer counts
        result(conn, "a", a_cmd, phase="committed", ts=3.5)
    _step(fleet, 4.0)
    assert _devices(fleet, rid)["a"]["state"] == "committed"


def _aborted_after_a_committed(engine, devices):
    """A rollout over ``devices`` whose device a committed, then aborted: (id, the
    rollback command sent to a)."""
    rid = _create(engine, devices=devices)
    _step(engine, 1.0)
    _step(engine, 2.0)
    with transaction(engine) as conn:
        result(conn, "a", _sent_to(engine, rid, "a")["cmd_id"], phase="committed", ts=2.5)
    _step(engine, 3.0)
    with transaction(engine) as conn:
        abort_rollout(conn, rid, 4.0)
    _step(engine, 5.0)
    return rid, next(o for o in _step(engine, 6.0).outgoing if o.doc["type"] == "rollback")


def test_a_rollback_result_counts_only_from_its_device(fleet):
    # b: in the rollout, never sent anything
    rid, rollback = _aborted_after_a_committed(fleet, ["a", "b"])
    assert rollback.doc["args"] == {"from_version": "2"}  # the version to leave
    with transaction(fleet) as conn:
        result(conn, "b", rollback.cmd_id, ok=True, phase=None, ts=6.5, ctype="rollback")
    _step(fleet, 7.0)
    assert _devices(fleet, rid)["a"]["state"] == "rollback_sent"


def _rollback_answer(engine, ok, running):
    rid, rollback = _aborted_after_a_committed(engine, ["a"])
    with transaction(engine) as conn:
        conn.execute(sa.insert(messages).values(
            device_id="a", fleet="f1", kind="cmd/result", seq=999, ts=6.5, received_at=6.5,
            payload={"cmd_id": rollback.cmd_id, "type": "rollback", "ok": ok, "error": "refused",
                     "detail": {"running_version": running}}))
    _step(engine, 7.0)
    return _devices(engine, rid)["a"]["state"]


def test_a_refused_rollback_from_a_device_already_off_the_version_is_confirmed(fleet):
    """Its probation rolled it back meanwhile: it is off the version, as asked."""
    assert _rollback_answer(fleet, False, running="1") == "rollback_confirmed"


def test_a_refused_rollback_from_a_device_still_on_the_version_failed(fleet):
    assert _rollback_answer(fleet, False, running="2") == "rollback_failed"


def test_the_resend_map_forgets_what_no_longer_matters(monkeypatch):
    """Every publish call (each controller step, commands or not) drops the sends older
    than RESEND_S: they read as due anyway, so the map stays the size of the last few
    seconds' commands however many rollouts have come and gone."""
    monkeypatch.setattr(commands, "_last_sent", {})
    for i in range(1000):  # a finished rollout's commands
        commands._last_sent[f"ro1-u-{i}"] = 100.0
    commands._last_sent["ro2-u-live"] = 110.0
    commands._last_sent["ro3-u-future"] = 500.0  # the clock stepped back since
    assert not commands.due("ro2-u-live", 112.0) and commands.due("ro1-u-0", 116.0)
    assert commands.publish(None, [], 116.0) == 0  # no commands this step: no broker needed
    assert commands._last_sent == {"ro2-u-live": 110.0}
    assert not commands.due("ro2-u-live", 116.0) and commands.due("ro3-u-future", 116.0)
    commands.publish(None, [], 125.0)
    assert commands._last_sent == {}
