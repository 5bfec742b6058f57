"""What each install brings: the device install ([agent]) never pulls the build or cloud stack."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HEAVY = {"torch", "onnx", "onnxscript", "litert-torch", "neural-compressor", "torch-pruning",
         "sqlalchemy", "fastapi", "uvicorn", "psycopg", "scikit-learn", "matplotlib"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!;~]", r, maxsplit=1)[0].lower() for r in requirements}


def test_agent_install_has_no_torch_and_no_cloud_stack():
    device = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["agent"])
    assert not device & HEAVY, device & HEAVY
    assert {"numpy", "paho-mqtt", "cryptography", "onnxruntime", "ai-edge-litert"} <= device


def test_build_extra_pins_the_cpu_torch():
    assert "torch==2.13.0" in PROJECT["optional-dependencies"]["build"]
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_extras_named_in_the_issue_exist():
    assert {"agent", "build", "cloud", "all", "dev"} <= set(PROJECT["optional-dependencies"])
