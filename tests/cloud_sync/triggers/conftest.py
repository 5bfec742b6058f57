"""Trigger fixtures: a cloud config on the parametrised store with a short-window policy."""

from __future__ import annotations

import pytest

from tests.cloud_sync.ingest.conftest import make_cfg, mqtt_broker, thread_worker  # noqa: F401

WINDOW_S = 60.0
T0 = 1_700_000_040.0  # a window boundary (multiple of 60), in the past


@pytest.fixture()
def make_trigger_cfg(tmp_path, db_url):
    """A CloudConfig: 60 s windows, 2 of 3, at least 2 devices; ``over`` replaces defaults."""
    from cloud_sync.config import CloudConfig

    def make(actions=(), **over):
        policy = {"window_s": WINDOW_S, "k": 2, "n": 3, "min_devices": 2,
                  "actions": list(actions), "backoff_s": 0.05, "backoff_max_s": 0.2, **over}
        return CloudConfig.from_dict({"data_dir": str(tmp_path / "cloud"), "db": db_url,
                                      "triggers": {"default": policy}})

    return make
