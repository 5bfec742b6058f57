"""Every registered (format, precision, method) on a tiny residual/depthwise model: the file
runs in its real runtime and computes what the torch model computes (parity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.introspect import precision_of
from export.parity import parity
from export.registry import QUANTIZERS, exporter_for
from export.runner import ExportedModel
from tests.export.conftest import make_job, make_target

exporter_for("onnx")  # register the built-ins before parametrising over them
KEYS = sorted(QUANTIZERS.keys())
SLOW = {"tflite", "inc"}


def _params() -> list:
    return [pytest.param(fmt, precision, name, id=f"{fmt}-{precision}-{name}",
                         marks=[pytest.mark.slow] if {fmt, name} & SLOW else [])
            for fmt, precision, name in KEYS]


@pytest.mark.parametrize("fmt, precision, name", _params())
def test_quantizer_output_matches_torch_in_its_runtime(tmp_path, tiny_teacher, tiny_validation,
                                                      tiny_calibration, fmt, precision, name):
    x, _ = tiny_validation
    target = make_target(fmt, precision)
    job = make_job(tiny_teacher, x[:1], tiny_calibration, target, tmp_path)
    quantizer = QUANTIZERS.get((fmt, precision, name))
    path = quantizer.run(job, tmp_path / f"out{exporter_for(fmt).suffix}")
    model = ExportedModel(fmt, path, target.runtime_options())
    with torch.no_grad():
        reference = tiny_teacher(x).numpy()
    figures = parity(model.predict(x.numpy()), reference)
    if precision == "fp32":
        assert figures["max_abs_diff"] < 1e-4
    elif precision == "fp16":
        assert figures["max_abs_diff"] < 0.05 * np.abs(reference).max()
    assert figures["top1_agreement"] >= 0.95
    assert precision_of(fmt, path, model.session) == precision  # what `bundle pack` reads


@pytest.mark.slow
def test_tflite_static_int8_has_quantized_io(tmp_path, tiny_teacher, tiny_validation,
                                             tiny_calibration):
    pytest.importorskip("litert_torch")
    x, _ = tiny_validation
    target = make_target("tflite", "int8")
    job = make_job(tiny_teacher, x[:1], tiny_calibration, target, tmp_path)
    path = QUANTIZERS.get(("tflite", "int8", "litert-pt2e")).run(job, tmp_path / "q.tflite")
    model = ExportedModel("tflite", path, target.runtime_options())
    assert model.input.dtype == "int8" and model.input.quantization.scale > 0
    assert model.outputs[0].dtype == "int8" and model.outputs[0].quantization is not None


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_onnx_export_writes_the_profile_opset(tmp_path, tiny_teacher, tiny_validation, opset):
    import onnx

    x, _ = tiny_validation
    path = exporter_for("onnx").export(tiny_teacher, x[:1], make_target("onnx", "fp32", opset),
                                       tmp_path / "m.onnx")
    versions = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
    assert versions[""] == opset
    model = ExportedModel("onnx", path, {"threads": 1})
    assert model.fixed_batch is None  # dynamic batch
    with torch.no_grad():
        assert parity(model.predict(x.numpy()), tiny_teacher(x).numpy())["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_tflite_int8_of_a_detector_head_leaves_the_refused_ops_in_float(tmp_path):
    """A YOLO-style head (``sigmoid(x) * stride`` flattened into the output) breaks LiteRT's
    same-scale rule when fully int8; the quantizer retries with those ops in float."""
    pytest.importorskip("litert_torch")
    from examples.digit_boxes.data import splits
    from examples.digit_boxes.models import digit_detector

    torch.manual_seed(0)
    model = digit_detector().eval()
    parts = splits(0, train=8, calibration=32, validation=16)
    x, cal = parts["validation"][0], parts["calibration"][0]
    target = make_target("tflite", "int8")
    job = make_job(model, x[:1], cal, target, tmp_path)
    path = QUANTIZERS.get(("tflite", "int8", "litert-pt2e")).run(job, tmp_path / "q.tflite")
    file_out = ExportedModel("tflite", path, target.runtime_options()).predict(x.numpy())
    with torch.no_grad():
        torch_out = model(x).numpy()
    assert file_out.shape == torch_out.shape == (16, 14, 180)
    error = np.abs(file_out - torch_out)   # outputs in [0, 1], int8 all the way to them
    assert np.isfinite(file_out).all() and error.mean() < 0.01, error.mean()


def test_ort_preprocessing_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """ORT's symbolic shape inference gives up on the detector's head and, before raising,
    saves ``sym_shape_infer_temp.onnx`` plus a weights file into the current directory;
    the quantizer falls back to the raw file and the user's folder stays clean."""
    from examples.digit_boxes.models import digit_detector
    from export.onnx import _preprocessed

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    target = make_target("onnx", "fp32")
    src = exporter_for("onnx").export(digit_detector().eval(), torch.randn(1, 1, 96, 96), target,
                                      tmp_path / "m.onnx")
    assert _preprocessed(src, tmp_path / "q.onnx") == src   # inference incomplete: raw file
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "m.onnx"]
