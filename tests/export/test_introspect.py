"""Reading an ONNX model's precision needs no `onnx` package: a device with only the agent
extra (onnxruntime) packs its own model with `edgekit bundle pack`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.errors import BundleError
from export.introspect import precision_of

onnx = pytest.importorskip("onnx")  # only to make the test's graphs
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _graph(path: Path, nodes: list, inits: list, opset: int = 17) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="test " * 50)  # fields before and after the graph
    model.ir_version = 8
    model.metadata_props.add(key="k", value="v")
    onnx.save(model, str(path))
    return path


def _fp32(path: Path) -> Path:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    return _graph(path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [w])


def _fp16(path: Path) -> Path:
    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("MatMul", ["h", "w"], ["m"]),
             helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT)]
    return _graph(path, nodes, [w])


def _int8(path: Path) -> Path:  # QDQ, as onnxruntime's static quantizer writes it
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.ones((4, 4), np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("MatMul", ["d", "w"], ["y"])]
    return _graph(path, nodes, inits)


def _int8_dynamic(path: Path) -> Path:  # as onnxruntime's dynamic quantizer writes it
    inits = [numpy_helper.from_array(np.ones((4, 4), np.int8), "wq"),
             numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ws")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["xs", "ws"], ["scale"]),
             helper.make_node("Mul", ["accf", "scale"], ["y"])]
    return _graph(path, nodes, inits)


MODELS = {"fp32": _fp32, "fp16": _fp16, "int8": _int8, "int8-dynamic": _int8_dynamic}


@pytest.fixture()
def no_onnx(monkeypatch):
    """`import onnx` fails, as on a device with only `edgekit[agent]` installed."""
    monkeypatch.setitem(sys.modules, "onnx", None)


@pytest.mark.parametrize("precision", sorted(MODELS))
def test_onnx_precision_is_read_without_the_onnx_package(tmp_path, no_onnx, precision):
    path = MODELS[precision](tmp_path / f"{precision}.onnx")
    assert precision_of("onnx", path, session=None) == precision


def test_an_unreadable_onnx_file_is_a_clear_error(tmp_path, no_onnx):
    path = _fp32(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:-7])  # cut inside the graph
    with pytest.raises(BundleError, match="--precision"):
        precision_of("onnx", path, session=None)


def test_bundle_pack_of_an_onnx_model_works_without_the_onnx_package(tmp_path, tiny_onnx,
                                                                    keypair):
    # The whole `bundle pack` path, in a fresh interpreter where `import onnx` fails.
    out = tmp_path / "tiny.ekb"
    code = ("import sys; sys.modules['onnx'] = None; from edgekit.cli.main import main; "
            "sys.argv[0] = 'edgekit'; main()")
    done = subprocess.run(
        [sys.executable, "-c", code, "bundle", "pack", str(tiny_onnx), "--profile", "x86-64",
         "--name", "tiny", "--version", "1", "--key", str(keypair[0]), "-o", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(onnx/fp32)" in done.stdout and out.is_file()
