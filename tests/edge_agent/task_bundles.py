"""Detection and generic bundles for the agent's tests, packed from small real models.

``onnx_detector`` writes a yolov8-layout detector with the ``onnx`` package alone (no
torch: it runs where only the agent and onnx are installed, as on the Python 3.9 check);
``foreign_onnx`` / ``foreign_tflite`` export ``tests/export/foreign_detectors`` with torch
(other layouts, TFLite). Nothing is trained.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_agent.bundle import load_private_key, open_bundle, trusted_keys
from edge_agent.bundle.writer import write_bundle

LABELS = ["person", "traffic light", "dog"]
SIZE, GRID, CLASSES = 64, 8, 3


def onnx_detector(path: Path, seed: int = 0, two_outputs: bool = False) -> Path:
    """A detector in the yolov8 layout, ``images [1, 3, 64, 64] -> output0 [1, 7, 64]``:
    8 x 8 average pooling, a random linear map per anchor, then centre x/y within 8 pixels
    of the anchor, width/height 12..32 pixels, 3 sigmoid class scores spread around 0.5.
    ``two_outputs`` adds the pooled features ``[1, 3, 64]`` as a second output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    anchors = GRID * GRID
    ys, xs = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    centres = (np.stack([xs.ravel(), ys.ravel()]) + 0.5) * (SIZE // GRID)
    scale = np.concatenate([np.full((2, anchors), 16.0), np.full((2, anchors), 20.0),
                            np.ones((CLASSES, anchors))]).astype(np.float32)
    offset = np.concatenate([centres - 8, np.full((2, anchors), 12.0),
                             np.zeros((CLASSES, anchors))]).astype(np.float32)
    consts = {"shape": np.array([1, 3, anchors], np.int64),
              "weight": rng.normal(0, 2, (4 + CLASSES, 3)).astype(np.float32),
              "bias": rng.normal(0, 1, (4 + CLASSES, anchors)).astype(np.float32),
              "scale": scale, "offset": offset}
    nodes = [helper.make_node("AveragePool", ["images"], ["pooled4"], kernel_shape=[8, 8],
                              strides=[8, 8]),
             helper.make_node("Reshape", ["pooled4", "shape"], ["pooled"]),
             helper.make_node("MatMul", ["weight", "pooled"], ["mixed"]),
             helper.make_node("Add", ["mixed", "bias"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["unit"]),
             helper.make_node("Mul", ["unit", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["output0"])]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                             [1, 4 + CLASSES, anchors])]
    if two_outputs:
        outputs.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT,
                                                     [1, 3, anchors]))
    graph = helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        outputs, [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_images(n: int = 16, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1] images the size the test detectors take."""
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
