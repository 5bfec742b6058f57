"""Write a signed bundle holding a model file and its golden input/output pair (shared by
``bundle pack`` and ``edgekit build``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.bundle import Manifest
from edge_agent.bundle.writer import write_bundle
from edge_agent.golden import save_arrays


def write_model_bundle(manifest: Manifest, model_file: Path, golden_in: list[np.ndarray],
                       golden_out: list[np.ndarray], key: Ed25519PrivateKey,
                       out: Path) -> Manifest:
    """Sign and write ``out`` with the model and golden arrays; returns the written manifest."""
    with tempfile.TemporaryDirectory(prefix="edgekit-bundle-") as tmp:
        gin, gout = Path(tmp) / "golden_input.npz", Path(tmp) / "golden_output.npz"
        gin.write_bytes(save_arrays(golden_in))
        gout.write_bytes(save_arrays(golden_out))
        payloads = {"model": Path(model_file), "golden_input": gin, "golden_output": gout}
        return write_bundle(manifest, payloads, key, Path(out))
