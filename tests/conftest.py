"""Fixtures shared by the whole suite: keys, tiny real models, bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle import generate_keypair, load_private_key
from tests.models import make_tiny_onnx, make_tiny_tflite


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private, public) PEM paths of a signing key made for this test session."""
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A second, untrusted key pair."""
    return generate_keypair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture(scope="session")
def private_key(keypair):
    return load_private_key(keypair[0])


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fp32 ONNX classifier: float[N,1,8,8] -> probabilities[N,10]."""
    return make_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fp32 TFLite classifier converted by litert-torch: float[1,1,8,8] -> [1,10]."""
    return make_tiny_tflite(tmp_path_factory.mktemp("tflite") / "tiny.tflite")


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
