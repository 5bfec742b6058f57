"""Fixtures shared by the whole suite: keys, tiny real models, bundles."""

from __future__ import annotations

import os
import shutil
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
    """A real fp32 ONNX classifier: float[N,1,8,8] -> probabilities[N,10]. Where only the
    agent extra is installed (no `onnx` package: .ci/py39.sh), the same model, made on the
    build host, comes from $EDGEKIT_TEST_ONNX."""
    return _prebuilt_or_made("EDGEKIT_TEST_ONNX", tmp_path_factory.mktemp("onnx") / "tiny.onnx",
                             make_tiny_onnx)


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fp32 TFLite classifier converted by litert-torch: float[1,1,8,8] -> [1,10].
    Where only the device side is installed (no torch: .ci/py39.sh), the same model, made
    on the build host, comes from $EDGEKIT_TEST_TFLITE."""
    return _prebuilt_or_made("EDGEKIT_TEST_TFLITE",
                             tmp_path_factory.mktemp("tflite") / "tiny.tflite", make_tiny_tflite)


def _prebuilt_or_made(variable: str, out: Path, make) -> Path:
    """A copy of the model file $VARIABLE names, or ``make(out)`` where it is unset."""
    prebuilt = os.environ.get(variable)
    if prebuilt:
        shutil.copyfile(prebuilt, out)
        return out
    return make(out)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def make_onnx_bundle(tmp_path_factory: pytest.TempPathFactory, keypair):
    """Pack a tiny ONNX model into a signed bundle: version, profile and model variant vary."""
    from export.pack import PackRequest, pack_model
    from hardware_profiles import get_profile

    folder = tmp_path_factory.mktemp("bundles")
    made: dict[tuple, Path] = {}

    def make(version: str = "1", profile: str = "x86-64", seed: int = 0,
             nan_above: float | None = None, slow: int = 0, key: Path | None = None) -> Path:
        spec = (version, profile, seed, nan_above, slow, key)
        if spec not in made:
            tag = f"v{version}-{profile}-s{seed}-n{nan_above}-slow{slow}-{len(made)}"
            model = make_tiny_onnx(folder / f"{tag}.onnx", seed=seed, nan_above=nan_above,
                                   slow=slow)
            out = folder / f"{tag}.ekb"
            pack_model(PackRequest(model_file=model, profile=get_profile(profile), name="tiny",
                                   version=version, key_file=key or keypair[0], out=out))
            made[spec] = out
        return made[spec]

    return make


@pytest.fixture(scope="session")
def tiny_teacher():
    """A trained TinyNet for compression and export tests (do not modify: copy it first)."""
    from tests.compress.tiny import trained_tiny_model

    return trained_tiny_model()


@pytest.fixture(scope="session")
def tiny_validation():
    """(inputs, labels) of the tiny model's validation set."""
    from tests.compress.tiny import tiny_tensors

    return tiny_tensors(64, 3)
