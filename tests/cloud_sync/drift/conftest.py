"""Simulated digits worlds (model, reference statistics, no-drift population) for drift tests.

Built by the drift benchmark's own code (``benchmarks/drift.py``): each image is a real
digit, so the pixels of one inference are correlated as real inputs are.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.drift import MESSAGES_PER_WINDOW, Scenario, device_messages, scenario
from cloud_sync.drift import WindowCounts, aggregate


@pytest.fixture(scope="session")
def image_world() -> Scenario:
    return scenario("image")


@pytest.fixture(scope="session")
def exposure_world() -> Scenario:
    return scenario("image+exposure")


@pytest.fixture(scope="session")
def features_world() -> Scenario:
    return scenario("features")


def device_window(world: Scenario, size: int, rng: np.random.Generator, shift: str | None = None,
                  strength: float = 0.0, device: str = "dev-1") -> WindowCounts:
    """One device window of ``size`` inferences, counted by the agent's ModelMetrics."""
    messages = device_messages(world, size, shift, strength, rng, device, 0.0)
    return aggregate(messages, device, 0.0, MESSAGES_PER_WINDOW + 1.0)
