"""Detection and generic bundles for the agent's tests, packed from small real models as
other tools export them (``tests/export/foreign_detectors``: nothing is trained)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_agent.bundle import load_private_key, open_bundle, trusted_keys
from edge_agent.bundle.writer import write_bundle

LABELS = ["person", "traffic light", "dog"]


def reference_images(n: int = 16, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1] images the size the foreign detectors take."""
    from tests.export.foreign_detectors import SIZE

    return np.random.default_rng(seed).uniform(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


def pack_task(model: Path, out: Path, keypair, kind: str, layout: str | None = None,
              version: str = "1", labels: list[str] | None = None, **task) -> Path:
    """``bundle pack`` of ``model`` as task ``kind`` with reference statistics."""
    from export.pack import PackRequest, TaskOptions, pack_model
    from hardware_profiles import get_profile

    pack_model(PackRequest(
        model_file=model, profile=get_profile("x86-64"), name=out.stem, version=version,
        key_file=keypair[0], out=out, labels=list(labels or []),
        reference_data=reference_images(), task=TaskOptions(kind=kind, layout=layout, **task)))
    return out


def foreign_onnx(layout: str, folder: Path, seed: int = 0) -> Path:
    """A foreign detector (or, for ``boxes_scores``, a two-output model) as ONNX."""
    from tests.export.foreign_detectors import export_foreign

    return export_foreign(layout, folder / f"{layout}-{seed}.onnx", seed=seed)


def foreign_tflite(layout: str, folder: Path, seed: int = 0) -> Path:
    """A foreign detector converted to TFLite by litert-torch."""
    import litert_torch
    import torch

    from tests.export.foreign_detectors import SIZE, ForeignDetector

    torch.manual_seed(seed)
    model = ForeignDetector(layout).eval()
    with torch.no_grad():
        model.cls.bias.fill_(0.0)
    path = folder / f"{layout}-{seed}.tflite"
    litert_torch.convert(model, (torch.zeros(1, 3, SIZE, SIZE),)).export(str(path))
    return path


def rewrite(bundle: Path, keypair, out: Path, payloads: dict | None = None,
            **changes) -> Path:
    """The bundle again with manifest fields (e.g. ``preprocessing``) and payload files
    (role -> path) replaced, re-signed."""
    with open_bundle(bundle, trusted_keys([keypair[1]])) as opened:
        manifest = replace(opened.manifest, **changes)
        files = {role: opened.path(role) for role in opened.manifest.files}
        files.update(payloads or {})
        write_bundle(manifest, files, load_private_key(keypair[0]), out)
    return out


def golden_arrays(bundle: Path, keypair, role: str = "golden_output") -> list[np.ndarray]:
    """A bundle's golden input or output arrays."""
    from edge_agent.golden import load_arrays

    with open_bundle(bundle, trusted_keys([keypair[1]])) as opened:
        return load_arrays(opened.path(role))
