"""/api/v1/drift and /api/v1/triggers: scores with their thresholds, filtered; triggers with
evidence, actions and attempts; secrets redacted; auth required; bad filters are 400s."""

from __future__ import annotations

from cloud_sync.actions.worker import run_due_actions
from cloud_sync.store import transaction
from cloud_sync.triggers.controller import controller_step
from tests.cloud_sync.api.conftest import AUTH
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S, make_trigger_cfg  # noqa: F401
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows


def _fired(engine, cfg) -> int:
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(5, drifted=3), T0, 3, WINDOW_S, samples=1)
        fired = controller_step(conn, cfg, T0 + 3 * WINDOW_S).fired
    run_due_actions(engine, cfg)
    return fired[0]


def test_drift_scores_filter_by_device_kind_scope_and_time(client, engine,
                                                           make_trigger_cfg):  # noqa: F811
    _fired(engine, make_trigger_cfg())
    dev = client.get("/api/v1/drift?device=dev-000&kind=input", headers=AUTH).json()
    assert dev["count"] == 3 and {s["verdict"] for s in dev["items"]} == {"drift"}
    first = dev["items"][0]
    assert first["window_start"] == T0 + 2 * WINDOW_S and first["model"] == "sim-model"
    assert first["score"] > first["threshold"] >= first["critical_value"]
    assert first["n_eff"] > 0 and first["m_eff"] > 0 and first["details"]["statistic"]
    fleet = client.get("/api/v1/drift?fleet=f1&scope=fleet", headers=AUTH).json()
    assert fleet["count"] == 9 and {s["device_id"] for s in fleet["items"]} == {None}
    late = client.get(f"/api/v1/drift?from={T0 + 2 * WINDOW_S}&limit=5", headers=AUTH).json()
    assert late["count"] == 5 and all(s["window_end"] > T0 + 2 * WINDOW_S for s in late["items"])
    assert client.get("/api/v1/drift?kind=latency", headers=AUTH).status_code == 400
    assert client.get("/api/v1/drift").status_code == 401


def test_triggers_list_and_detail_with_evidence_and_attempts(client, engine,
                                                             make_trigger_cfg):  # noqa: F811
    cfg = make_trigger_cfg(actions=[{"kind": "webhook", "url": "http://127.0.0.1:9/x",
                                     "secret": "s3cret", "timeout_s": 0.5}], max_attempts=1)
    trigger_id = _fired(engine, cfg)
    listed = client.get("/api/v1/triggers?fleet=f1", headers=AUTH).json()
    assert [t["id"] for t in listed["items"]] == [trigger_id]
    assert listed["items"][0]["actions"][0]["state"] == "failed"
    detail = client.get(f"/api/v1/triggers/{trigger_id}", headers=AUTH).json()
    assert sorted(detail["evidence"]["devices_affected"]) == ["dev-000", "dev-001", "dev-002"]
    assert detail["samples_count"] == 15 and detail["samples_export"].endswith(".npz")
    action, = detail["actions"]
    assert action["config"]["secret"] == "***" and "s3cret" not in str(detail)
    assert len(action["history"]) == 1 and action["history"][0]["error"]
    assert client.get("/api/v1/triggers/999", headers=AUTH).status_code == 404
    assert client.get("/api/v1/triggers?fleet=other", headers=AUTH).json()["count"] == 0
