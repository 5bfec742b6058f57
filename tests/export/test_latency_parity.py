"""Latency (median of runs, round-robin) and parity figures."""

from __future__ import annotations

import os

import numpy as np

from export.latency import Timing, benchmark, host_threads
from export.parity import parity


def test_benchmark_times_each_file(tiny_onnx):
    sample = np.zeros((1, 1, 8, 8), np.float32)
    options = {"providers": ["CPUExecutionProvider"]}
    timings = [Timing.of(n, "onnx", tiny_onnx, {**options, "threads": n}) for n in (1, 2)]
    ms = benchmark(timings, sample, runs=20, warmup=2, rounds=2)
    assert set(ms) == {1, 2} and all(0 < v < 100 for v in ms.values())


def test_threads_are_capped_at_this_hosts_cores():
    cores = os.cpu_count() or 1
    assert host_threads(cores + 4) == cores and host_threads(cores + 4, cap=False) == cores + 4
    assert host_threads(1) == 1


def test_parity_figures():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    out = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    figures = parity(out, ref)
    assert figures == {"max_abs_diff": 0.6, "top1_agreement": round(2 / 3, 5)}
    assert parity(out[:2], ref)["top1_agreement"] == 0.0
