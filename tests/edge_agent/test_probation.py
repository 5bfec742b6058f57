"""Probation verdicts and the latency-regression rule shared with the update check."""

from edge_agent.config import UpdatePolicy
from edge_agent.probation import Probation, latency_regressed

POLICY = UpdatePolicy(max_latency_ratio=2.0, min_latency_regression_ms=0.5,
                      min_inferences_for_rates=5)


def test_a_regression_needs_both_the_ratio_and_the_floor():
    assert latency_regressed(2.0, 5.0, POLICY)        # 2.5x and +3 ms
    assert not latency_regressed(2.0, 3.9, POLICY)    # +1.9 ms but under 2x
    # the demo's halt: a 0.02 ms classifier re-measured at 0.19 ms on a busy core
    assert not latency_regressed(0.02, 0.19, POLICY)
    assert not latency_regressed(float("nan"), 9.0, POLICY)


def test_probation_rolls_back_a_slow_model_only_past_the_floor():
    tiny = Probation(POLICY, baseline_latency_ms=0.02)
    for _ in range(10):
        tiny.observe(0.3, ok=True)
    assert tiny.verdict() is None
    real = Probation(POLICY, baseline_latency_ms=4.0)
    for _ in range(10):
        real.observe(9.0, ok=True)
    assert "over 2.0x the previous model's 4.00 ms" in real.verdict()


def test_probation_fails_on_non_finite_outputs_at_once():
    p = Probation(POLICY, baseline_latency_ms=None)
    p.observe(1.0, ok=True, finite=False)
    assert "NaN/inf" in p.verdict()
