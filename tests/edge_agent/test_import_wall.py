"""The wall around edge_agent: no torch, no build or cloud packages, valid Python 3.9."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[2] / "edge_agent"
ALLOWED_THIRD_PARTY = {"numpy", "paho", "cryptography", "onnxruntime", "ai_edge_litert",
                       "tflite_runtime", "edge_agent"}
FORBIDDEN_LOADED = ("torch", "compress", "export", "cloud_sync", "onnx", "litert_torch",
                    "neural_compressor", "sqlalchemy", "fastapi", "pydantic")
SOURCES = sorted(AGENT_DIR.rglob("*.py"))


def _check_in_subprocess(code: str, forbidden: tuple = FORBIDDEN_LOADED) -> None:
    probe = (f"{code}\nimport sys\nbad = [m for m in {forbidden!r} if m in sys.modules]\n"
             "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_importing_edge_agent_never_loads_torch_or_cloud_packages():
    _check_in_subprocess("import edge_agent, edge_agent.bundle, edge_agent.protocol, "
                         "edge_agent.runtimes, edge_agent.model, edge_agent.golden")


@pytest.mark.parametrize("argv", [["agent", "--help"], ["bundle", "verify", "--help"]])
def test_agent_cli_never_loads_torch(argv):
    _check_in_subprocess(
        f"import sys\nsys.argv = ['edgekit', *{argv!r}]\nfrom edgekit.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n",
        # typer itself imports pydantic when it is installed; the agent code never does
        forbidden=tuple(m for m in FORBIDDEN_LOADED if m != "pydantic"))


def _stdlib_names() -> set[str]:
    """The standard library's top-level modules (Python 3.9 has no sys.stdlib_module_names:
    there, what its own library folders hold)."""
    if hasattr(sys, "stdlib_module_names"):
        return set(sys.stdlib_module_names)
    import pkgutil
    import sysconfig

    lib = Path(sysconfig.get_paths()["stdlib"])
    return {m.name for m in pkgutil.iter_modules([str(lib), str(lib / "lib-dynload")])} | set(
        sys.builtin_module_names)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(AGENT_DIR)))
def test_agent_sources_import_only_what_a_device_has(path):
    stdlib = _stdlib_names()
    for node in ast.walk(ast.parse(path.read_text(), feature_version=(3, 9))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            assert top in stdlib or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {name}"


def test_the_http_api_does_not_import_the_agent():
    """No agent <-> http_api cycle: the HTTP layer needs only the inputs module."""
    _check_in_subprocess("import edge_agent.http_api", forbidden=("edge_agent.agent",))


def test_command_handlers_do_not_import_the_agent():
    _check_in_subprocess("import edge_agent.commands, edge_agent.serving",
                         forbidden=("edge_agent.agent",))
