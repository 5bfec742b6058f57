"""Fixtures for the export tests: a trained tiny model, its data, and quantize jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware_profiles import OnnxTarget, TfliteTarget
from tests.compress.tiny import tiny_tensors


@pytest.fixture(scope="session")
def tiny_calibration():
    return tiny_tensors(32, 2)[0]


def make_target(fmt: str, precision: str, opset: int = 17, threads: int = 1):
    """A target of one format and precision, as a profile would list it."""
    if fmt == "onnx":
        return OnnxTarget(format="onnx", precision=precision, opset=opset, threads=threads)
    return TfliteTarget(format="tflite", precision=precision, threads=threads)


def make_job(model, example, calibration, target, workdir: Path):
    """A QuantizeJob whose fp32 file is exported on first use."""
    from export.registry import QuantizeJob, exporter_for

    exporter = exporter_for(target.format)
    cache: dict[str, Path] = {}

    def fp32_file() -> Path:
        if "p" not in cache:
            cache["p"] = exporter.export(model, example, target,
                                         workdir / f"fp32{exporter.suffix}")
        return cache["p"]

    return QuantizeJob(model=model, example=example, calibration=calibration, target=target,
                       workdir=workdir, fp32_file=fp32_file)
