"""Choosing inputs worth sending home for retraining: rate-limited and size-capped."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import numpy as np


class TokenBucket:
    """At most ``rate_per_min`` events a minute, with a burst of up to ``burst`` events
    (default: one minute's worth)."""

    def __init__(self, rate_per_min: float, burst: float | None = None) -> None:
        self._lock = threading.Lock()
        self._burst = burst
        self.set_rate(rate_per_min)

    def set_rate(self, rate_per_min: float) -> None:
        """Change the rate; the bucket starts full."""
        with self._lock:
            self._rate = max(rate_per_min, 0.0) / 60.0
            self._capacity = max(self._burst or rate_per_min, 1.0)
            self._tokens = self._capacity if rate_per_min > 0 else 0.0
            self._last = time.monotonic()

    def ready(self) -> bool:
        """True if an event could happen now (a token is there), without spending it."""
        with self._lock:
            if self._rate <= 0:
                return self._tokens >= 1.0
            now = time.monotonic()
            return min(self._capacity, self._tokens + (now - self._last) * self._rate) >= 1.0

    def take(self) -> bool:
        """True (and one token spent) if an event may happen now."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


CHECKS_PER_S = 20.0  # inferences a second that sampling looks at, at most


class Sampler:
    """Decides which inputs become samples, and encodes them for the ``samples`` topic.

    Looking at an inference (its top-1 confidence, its input's range) costs tens of
    microseconds on a large model, so at high inference rates sampling looks at no
    more than ``CHECKS_PER_S`` inferences a second: samples are still low-confidence
    or out-of-range inputs, chosen among a subset of the traffic.
    """

    def __init__(self, rate_per_min: float, max_bytes: int, low_confidence: float,
                 input_range: tuple | None = None) -> None:
        self.bucket = TokenBucket(rate_per_min)
        self.checks = TokenBucket(CHECKS_PER_S * 60.0, burst=CHECKS_PER_S)
        self.max_bytes = int(max_bytes)
        self.low_confidence = float(low_confidence)
        self.input_range = input_range

    def reason(self, x: np.ndarray, confidence: float) -> str | None:
        """Why this input is interesting ('low_confidence', 'out_of_range'), or None."""
        if confidence < self.low_confidence:
            return "low_confidence"
        if self.input_range is not None:
            lo, hi = self.input_range
            if float(x.min()) < lo or float(x.max()) > hi:
                return "out_of_range"
        return None

    def ready(self) -> bool:
        """Whether to look at this inference: a sample could be taken and the check rate
        allows it (so the caller computes what ``select`` needs)."""
        return self.bucket.ready() and self.checks.take()  # checks only when a sample may go

    def select(self, x: np.ndarray, confidence: float) -> str | None:
        """The reason to keep ``x``, if it is interesting, small enough and the rate allows."""
        why = self.reason(x, confidence)
        if why is None or x.nbytes > self.max_bytes or not self.bucket.take():
            return None
        return why


def encode_input(x: np.ndarray) -> dict[str, Any]:
    """An array as the protocol's ``input`` block: dtype, shape, base64 of the raw bytes."""
    x = np.ascontiguousarray(x)
    return {"dtype": x.dtype.name, "shape": list(x.shape),
            "data": base64.b64encode(x.tobytes()).decode("ascii")}


def decode_input(block: dict[str, Any]) -> np.ndarray:
    """The inverse of ``encode_input``."""
    raw = base64.b64decode(block["data"])
    return np.frombuffer(raw, dtype=np.dtype(block["dtype"])).reshape(block["shape"])
