"""Retention defaults keep what the drift rule and the trigger cooldown read; a retention
set shorter is a one-line config error; the telemetry cap is per device and follows the
age and the telemetry interval."""

from __future__ import annotations

import pytest

from cloud_sync.config import CloudConfig, drift_lookback_s
from edge_agent.errors import ConfigError

DAY = 86400.0


def test_defaults_keep_a_week_and_twice_a_devices_telemetry_over_it():
    r = CloudConfig.from_dict({}).retention
    assert r.telemetry_max_age_s == 7 * DAY
    assert r.telemetry_max_rows_per_device == 2 * 7 * 8640  # 10 s telemetry interval
    assert r.status_max_rows_per_device == r.results_max_rows_per_device == 1000


def test_the_default_telemetry_cap_follows_the_interval_and_the_age():
    cfg = CloudConfig.from_dict({"ingest": {"telemetry_interval_s": 60},
                                 "retention": {"telemetry_max_age_s": DAY}})
    assert cfg.retention.telemetry_max_rows_per_device == 2 * 1440


def test_defaults_are_raised_to_a_longer_drift_lookback_and_cooldown():
    cfg = CloudConfig.from_dict({"triggers": {
        "default": {"window_s": 7 * DAY, "n": 3},
        "fleets": {"slow": {"cooldown_s": 200 * DAY}}}})
    assert drift_lookback_s(cfg.triggers) == 28 * DAY  # the controller reads this span
    assert cfg.retention.telemetry_max_age_s == 28 * DAY
    assert cfg.retention.telemetry_max_rows_per_device == 2 * 28 * 8640
    assert cfg.retention.triggers_max_age_s == 200 * DAY


@pytest.mark.parametrize("doc, message", [
    ({"retention": {"telemetry_max_age_s": 600}},
     r"'retention.telemetry_max_age_s' \(600\) keeps less than the drift rule's lookback "
     r"\(2400 s.*at least 2400"),
    ({"retention": {"telemetry_max_rows_per_device": 100}},
     r"'retention.telemetry_max_rows_per_device' \(100\).*at least 240"),
    ({"retention": {"triggers_max_age_s": 3600}}, r"'retention.triggers_max_age_s'.*cooldown"),
    ({"retention": {"telemetry_max_rows": 5}}, r"telemetry_max_rows_per_device"),
])
def test_a_retention_shorter_than_what_the_controller_reads_is_a_one_line_error(doc, message):
    with pytest.raises(ConfigError, match=message) as info:
        CloudConfig.from_dict(doc)
    assert "\n" not in str(info.value)
