"""Telemetry messages summed into drift windows: per device, pooled, sliding."""

from __future__ import annotations

import pytest

from cloud_sync.drift import DriftError, aggregate, group_by_model, pool, sliding_windows
from cloud_sync.drift.window import from_telemetry, window_bounds
from edge_agent.contracts.telemetry import ConfidenceHist, InputHist, ModelState
from edge_agent.protocol import Telemetry

EDGES = [0.0, 0.5, 1.0]
CONF_EDGES = [0.0, 0.5, 1.0]


def telemetry(device="d1", seq=0, ts=10.0, n=10, version="1", mean=0.8, classes=None,
              edges=EDGES) -> Telemetry:
    return Telemetry(
        device_id=device, seq=seq, ts=ts, model=ModelState("m", version), window_s=5.0,
        inferences=n, errors=0,
        confidence=ConfidenceHist(edges=CONF_EDGES, counts=[n // 5, n - n // 5], mean=mean),
        class_counts=classes if classes is not None else {"0": n // 2, "1": n - n // 2},
        input_hist=InputHist(bin_edges=edges, channel_axis=1, below=[1, 0], above=[0, 2],
                             per_channel=[[n, n], [n, 2 * n]], sample_stride=1))


def test_one_message_as_a_window_keeps_the_device_layout():
    w = from_telemetry(telemetry())
    assert w.input_counts.tolist() == [[1, 10, 10, 0], [0, 10, 20, 2]]
    assert (w.scope, w.start, w.end, w.inferences) == ("d1", 5.0, 10.0, 10)
    assert w.class_counts == {0: 5, 1: 5} and w.scored == 10
    assert w.confidence_mean == pytest.approx(0.8)


def test_aggregate_sums_counts_weights_the_mean_and_drops_repeats():
    msgs = [telemetry(seq=0, ts=1, n=10, mean=0.9), telemetry(seq=1, ts=2, n=30, mean=0.5),
            telemetry(seq=1, ts=2, n=30, mean=0.5), telemetry(seq=2, ts=9, n=10)]
    w = aggregate(msgs, "d1", 0.0, 5.0)
    assert (w.inferences, w.messages, w.input_inferences) == (40, 2, 40)
    assert w.input_counts[1].tolist() == [0, 40, 80, 4]
    assert w.confidence_mean == pytest.approx((0.9 * 10 + 0.5 * 30) / 40)
    assert (w.start, w.end) == (0.0, 5.0)
    assert aggregate(msgs, "d1", 20.0, 30.0) is None


def test_aggregate_counts_the_same_seq_of_another_incarnation():
    old, new = telemetry(seq=1, ts=1, n=10), telemetry(seq=1, ts=3, n=30)
    old.incarnation, new.incarnation = "0ld", "4e3"  # the outbox was lost in between
    assert aggregate([old, new, new], "d1", 0.0, 5.0).inferences == 40


def test_pool_needs_one_model_and_one_bin_layout():
    a, b = from_telemetry(telemetry("a")), from_telemetry(telemetry("b", seq=0))
    fleet = pool([a, b], "fleet:f")
    assert fleet.devices == {"a", "b"} and fleet.inferences == 20 and fleet.scope == "fleet:f"
    with pytest.raises(DriftError, match="group windows by model"):
        pool([a, from_telemetry(telemetry("c", version="2"))], "fleet:f")
    with pytest.raises(DriftError, match="different bins"):
        pool([a, from_telemetry(telemetry("c", edges=[0.0, 0.4, 1.0]))], "fleet:f")


def test_sliding_windows_are_aligned_overlapping_and_skip_open_ones():
    msgs = [telemetry(seq=i, ts=float(i), n=10) for i in range(1, 11)]
    windows = sliding_windows(msgs, length_s=4.0, step_s=2.0, until=10.0)
    assert [(w.start, w.end) for w in windows] == [(-2, 2), (0, 4), (2, 6), (4, 8), (6, 10)]
    assert [w.inferences for w in windows] == [10, 30, 40, 40, 40]  # ts 10 is in [10, 14)
    tumbling = sliding_windows(msgs, length_s=5.0)
    assert [w.inferences for w in tumbling] == [40, 50, 10]
    assert window_bounds(7.0, 7.0, 5.0, 5.0) == [(5.0, 10.0)]
    with pytest.raises(DriftError, match="name the pooled window"):
        sliding_windows([telemetry("a"), telemetry("b")], 5.0)
    assert sliding_windows([], 5.0) == []


def test_group_by_model_splits_devices_and_versions():
    msgs = [telemetry("a"), telemetry("a", seq=1, version="2"), telemetry("b")]
    assert sorted(group_by_model(msgs)) == [("a", "m", "1"), ("a", "m", "2"), ("b", "m", "1")]
    fleet = group_by_model(msgs, per_device=False)
    assert {k: len(v) for k, v in fleet.items()} == {("", "m", "1"): 2, ("", "m", "2"): 1}


def test_window_without_histograms_counts_inferences_only():
    bare = Telemetry(device_id="d1", seq=0, ts=1.0, model=ModelState("m", "1"), window_s=1.0,
                     inferences=7, errors=0)
    w = from_telemetry(bare)
    assert (w.inferences, w.input_inferences, w.input_counts, w.scored) == (7, 0, None, 0)
    assert w.confidence_mean is None
