"""Fixtures for the compression tests: a trained tiny model and its data."""

from __future__ import annotations

import pytest

from tests.compress.tiny import tiny_tensors, trained_tiny_model


@pytest.fixture(scope="session")
def tiny_teacher():
    """A trained TinyNet (do not modify: copy it first)."""
    return trained_tiny_model()


@pytest.fixture(scope="session")
def tiny_validation():
    return tiny_tensors(64, 3)
