"""Probation of a freshly switched model: watch live inferences, say when to roll back."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge_agent.config import UpdatePolicy


def latency_regressed(old_ms: float, new_ms: float, policy: UpdatePolicy) -> bool:
    """``new_ms`` is over the policy's ratio of ``old_ms`` and adds more than its floor."""
    return bool(np.isfinite(old_ms) and new_ms > policy.max_latency_ratio * old_ms
                and new_ms - old_ms > policy.min_latency_regression_ms)


class Probation:
    """Ends passed after N inferences or T seconds; fails on NaN/inf, errors or slowness."""

    def __init__(self, policy: UpdatePolicy, baseline_latency_ms: float | None) -> None:
        self.policy = policy
        self.baseline = baseline_latency_ms
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._errors = 0
        self._non_finite = 0

    def observe(self, latency_ms: float | None, ok: bool, finite: bool = True) -> None:
        """Count one inference of the new model."""
        with self._lock:
            if not ok:
                self._errors += 1
            elif not finite:
                self._non_finite += 1
            elif latency_ms is not None:
                self._latencies.append(latency_ms)

    @property
    def count(self) -> int:
        """Inferences seen so far."""
        return len(self._latencies) + self._errors + self._non_finite

    def verdict(self) -> str | None:
        """A reason to roll back, or None while the model behaves."""
        with self._lock:
            total = len(self._latencies) + self._errors + self._non_finite
            if self._non_finite:
                return f"model produced NaN/inf outputs ({self._non_finite} of {total})"
            if total >= self.policy.min_inferences_for_rates:
                rate = self._errors / total
                if rate > self.policy.max_error_rate:
                    return f"error rate {rate:.1%} over the {self.policy.max_error_rate:.1%} bound"
                if self.baseline and self._latencies:
                    p50 = float(np.median(self._latencies))
                    if latency_regressed(self.baseline, p50, self.policy):
                        ratio = self.policy.max_latency_ratio
                        return (f"latency p50 {p50:.2f} ms is over {ratio}x "
                                f"the previous model's {self.baseline:.2f} ms")
        return None

    def passed(self) -> bool:
        """True once enough inferences or time went by without a verdict."""
        elapsed = time.monotonic() - self.started
        return self.count >= self.policy.probation_inferences or \
            elapsed >= self.policy.probation_seconds
