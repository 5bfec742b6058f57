"""This host's int8 peak: a large int8 GEMM in ONNX Runtime at one thread, in GMAC/s.

An M x K x K ``MatMulInteger`` (uint8 x int8 -> int32) and ``QLinearMatMul``
(uint8 x int8 -> uint8), batch-1 runs timed like any model file (export/latency.py);
the peak is the faster of the two. A model's achieved int8 GMAC/s divided by this
says how much of the machine's int8 throughput its runtime uses.

    .venv/bin/python benchmarks/int8_peak.py [--size 1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _matmul_integer(k: int) -> tuple[list, list, int, int]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (k, k), dtype=np.int8), "B")
    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    return [node], [weight], TensorProto.UINT8, TensorProto.INT32


def _qlinear_matmul(k: int) -> tuple[list, list, int, int]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    consts = [numpy_helper.from_array(rng.integers(-128, 128, (k, k), dtype=np.int8), "B"),
              numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
              numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
              numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
              numpy_helper.from_array(np.array(0, np.int8), "b_zero"),
              numpy_helper.from_array(np.array(4.0, np.float32), "y_scale"),
              numpy_helper.from_array(np.array(128, np.uint8), "y_zero")]
    node = helper.make_node("QLinearMatMul", ["A", "a_scale", "a_zero", "B", "b_scale",
                                              "b_zero", "y_scale", "y_zero"], ["Y"])
    return [node], consts, TensorProto.UINT8, TensorProto.UINT8


GEMMS: dict[str, Callable[[int], tuple]] = {"MatMulInteger": _matmul_integer,
                                             "QLinearMatMul": _qlinear_matmul}


def write_gemm(kind: str, k: int, path: Path) -> Path:
    """An ONNX file computing one k x k x k int8 GEMM of the given kind."""
    import onnx
    from onnx import helper

    nodes, consts, in_type, out_type = GEMMS[kind](k)
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("A", in_type, [k, k])],
                              [helper.make_tensor_value_info("Y", out_type, [k, k])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


def gemm_gmacs(kind: str, k: int, folder: Path, runs: int = 20) -> float:
    """GMAC/s of one k x k x k int8 GEMM at one thread (median of the best round)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(write_gemm(kind, k, folder / f"{kind}.onnx")), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"A": np.random.default_rng(1).integers(0, 256, (k, k), dtype=np.uint8)}
    best = float("inf")
    for _ in range(3):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        best = min(best, float(np.median(times)))
    return k ** 3 / best / 1e9


def int8_peak(k: int = 1024) -> dict[str, float]:
    """GMAC/s of each int8 GEMM kind and the peak (the fastest) at one thread."""
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-peak-") as tmp:
        figures = {kind: gemm_gmacs(kind, k, Path(tmp)) for kind in GEMMS}
    return {**figures, "peak": max(figures.values())}


def main() -> None:
    """Print the int8 GEMM figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="GEMM size (default 1024)")
    args = parser.parse_args()
    for kind, value in int8_peak(args.size).items():
        print(f"{kind}: {value:.1f} GMAC/s")


if __name__ == "__main__":
    main()
