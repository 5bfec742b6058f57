"""benchmarks/int8_peak.py: the GEMM files compute what they claim, and the peak is positive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from benchmarks.int8_peak import GEMMS, gemm_gmacs, write_gemm


def test_matmul_integer_file_is_an_int8_gemm(tmp_path: Path) -> None:
    path = write_gemm("MatMulInteger", 16, tmp_path / "g.onnx")
    weight = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    # 7-bit activations: on x86 without VNNI, ORT's u8 x s8 kernel (vpmaddubsw) saturates
    # the int16 sum of two products (2 x 255 x 128 > 32767), so full-range inputs differ
    # from the exact product there; what is checked is that the file is an int8 GEMM
    a = np.random.default_rng(0).integers(0, 128, (16, 16), dtype=np.uint8)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"A": a})
    assert np.array_equal(y, a.astype(np.int32) @ weight.astype(np.int32))


@pytest.mark.parametrize("kind", sorted(GEMMS))
def test_each_gemm_kind_runs_and_reports_throughput(kind: str, tmp_path: Path) -> None:
    assert gemm_gmacs(kind, 64, tmp_path, runs=3) > 0
