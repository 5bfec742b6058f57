"""Interpreter threads are capped at the CPUs the process may use (never oversubscribed)."""

from __future__ import annotations

import os

import pytest

from edge_agent.runtimes import load_session
from edge_agent.runtimes import threads as threads_mod
from edge_agent.runtimes.threads import fit_threads, usable_cpus


def test_usable_cpus_follows_the_affinity_set():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this OS")
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_more_threads_than_cpus_are_capped_and_the_default_is_kept(monkeypatch):
    monkeypatch.setattr(threads_mod, "usable_cpus", lambda: 2)
    assert [fit_threads(n) for n in (0, 1, 2, 4, 64)] == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("fmt, model", [("onnx", "tiny_onnx"), ("tflite", "tiny_tflite")])
def test_sessions_run_with_the_fitted_count(fmt, model, request, monkeypatch):
    monkeypatch.setattr(threads_mod, "usable_cpus", lambda: 1)
    session = load_session(fmt, request.getfixturevalue(model), {"threads": 4})
    try:
        assert session.threads == 1
    finally:
        session.close()
