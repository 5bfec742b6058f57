"""ONNX: the exporter (opset from the target, dynamic batch, one file) and the quantizers
that write ONNX files (ONNX Runtime's static, dynamic and float16 converters).

Export strategy: opset >= 18 uses torch's dynamo exporter. Below 18 (the shipped
profiles say 17 or 13) the dynamo exporter cannot write the opset asked for, so the
TorchScript exporter writes it directly; if that fails, dynamo at 18 brought down to
17 (``onnx_opset.py``) is tried.

Int8: ORT's ``quantize_static`` with QDQ, per-channel int8 weights and uint8
activations is the fast path (all convs fuse to QLinearConv); ORT's defaults (int8
activations, per-tensor) leave most convs in float and are slower than fp32 on x86,
so they are registered only as the opt-in ``ort-peer-default`` baseline.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from compress import progress
from export.errors import ExportError, export_failure
from export.onnx_opset import downgrade
from export.quiet import quiet
from export.registry import Exporter, QuantizeJob, Quantizer, register_exporter, register_quantizer

INPUT_NAME, OUTPUT_NAME = "input", "output"
DYNAMO_MIN_OPSET = 18
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def output_names(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """``output`` for a single-output model; ``output_0``, ``output_1``, ... for several (in
    the order the model returns them)."""
    from compress.outputs import count

    with torch.no_grad():
        n = count(model(example))
    return [OUTPUT_NAME] if n == 1 else [f"{OUTPUT_NAME}_{i}" for i in range(n)]


def dynamo_export(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """torch's dynamo exporter at opset >= 18, brought down to ``opset`` 17 when asked."""
    import onnx

    torch.onnx.export(model, (example,), str(path), dynamo=True,
                      opset_version=max(opset, DYNAMO_MIN_OPSET), input_names=[INPUT_NAME],
                      output_names=output_names(model, example), external_data=False,
                      verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    if opset < DYNAMO_MIN_OPSET:
        onnx.save(downgrade(onnx.load(str(path)), opset), str(path))


def torchscript_export(model: torch.nn.Module, example: torch.Tensor, path: Path,
                       opset: int) -> None:
    """torch's TorchScript exporter, which writes opsets below 18 directly."""
    names = output_names(model, example)
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                      input_names=[INPUT_NAME], output_names=names,
                      dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}})


def export_onnx(model: torch.nn.Module, example: torch.Tensor, target: Any, path: Path) -> Path:
    """Write ``model`` as ONNX at the target's opset; the error names the blocking operator."""
    strategies = [dynamo_export] if target.opset >= DYNAMO_MIN_OPSET \
        else [torchscript_export, dynamo_export]
    errors: list[ExportError] = []
    for strategy in strategies:
        with quiet() as captured:
            try:
                strategy(model.eval(), example, path, target.opset)
                return path
            except Exception as exc:  # exporters raise many unrelated types
                failure = exc
        errors.append(export_failure("onnx", failure, captured.text))
    raise errors[0]


register_exporter(Exporter("onnx", ".onnx", export_onnx,
                           "torch.onnx.export: TorchScript below opset 18, dynamo from 18",
                           file_key=lambda target: (f"opset{target.opset}",)))


class _Reader:
    """ORT calibration reader over the job's calibration set."""

    def __init__(self, model_path: Path, job: QuantizeJob, batch: int = 16) -> None:
        import onnx

        name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
        self._batches = [{name: b.numpy()} for b in job.calibration_batches(batch)]
        self.rewind()

    def get_next(self) -> dict[str, Any] | None:
        """The next calibration batch, or None at the end."""
        return next(self._feeds, None)

    def rewind(self) -> None:
        """Start again from the first batch (ORT asks for this between passes)."""
        self._feeds = iter(progress.track(self._batches, "calibrating (onnxruntime)",
                                          total=len(self._batches)))


def _preprocessed(src: Path, pre: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet(), _scratch_cwd(pre.parent):
            quant_pre_process(str(src), str(pre))
        return pre
    except Exception:  # shape inference is an optimisation; quantize the raw file instead
        return src


def _preprocessed_once(src: Path) -> Path:
    """The pre-processed float file, made once per float file and shared by the full int8
    file and every selective variant (the node names they exclude come from it)."""
    pre = src.with_name(f"{src.stem}.{_digest(src)}.pre.onnx")
    return pre if pre.exists() else _preprocessed(src, pre)


def _digest(path: Path, extra: bytes = b"") -> str:
    return hashlib.sha256(path.read_bytes() + extra).hexdigest()[:12]


def _calibration_cache(pre: Path, job: QuantizeJob) -> Path:
    """Where ORT keeps the calibrated tensor ranges of ``pre`` for this calibration set, so a
    selective variant quantizes without calibrating again."""
    data = job.calibration.detach().float().numpy().tobytes()
    return pre.with_name(f"{pre.stem}.calib-{_digest(pre, data)}.json")


@contextlib.contextmanager
def _scratch_cwd(parent: Path) -> Iterator[None]:
    """Run in a scratch folder under ``parent``, removed afterwards: when symbolic shape
    inference is incomplete, ORT saves ``sym_shape_infer_temp.onnx`` and its weights into
    the current directory before raising, which would litter the user's folder."""
    scratch = Path(tempfile.mkdtemp(prefix=".ort-pre-", dir=parent))
    before = os.getcwd()
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(before)
        shutil.rmtree(scratch, ignore_errors=True)


def ort_static(job: QuantizeJob, out: Path) -> Path:
    """QDQ int8: per-channel int8 weights in 7 bits (``reduce_range``), uint8 activations,
    MinMax calibration.

    7-bit weights: on x86-64 CPUs with AVX2 but no VNNI (many hosts, and the build host
    of 2026-12-07), ONNX Runtime's u8s8 kernels add pairs of products in saturating
    16-bit lanes (255 x 127 x 2 overflows them), so a full-range int8 file computes
    something else there; ORT's guidance is ``reduce_range`` for such CPUs. A file must
    compute the same wherever it runs, so every ORT static file takes it: on a pruned
    transformer on that host, the largest error went from 0.26 to 0.044 of the output's
    range (LiteRT's int8 of it: 0.044).

    Selective: ``job.options["keep_float"]`` names nodes left in float (ORT's
    ``nodes_to_exclude``), ``job.options["quantize_only"]`` the only nodes quantized
    (``nodes_to_quantize``); node names are those ``quantized_nodes`` lists. With
    ``job.options["float_tail"]`` the nodes after the last weighted one stay float. For a QAT
    student (``job.options["qat_graph"]``), its trained graph exported as QDQ.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    graph = job.options.get("qat_graph")
    if graph is not None and not (job.options.get("keep_float")
                                  or job.options.get("quantize_only")):
        try:
            return _from_qat(graph, job, out)
        except ExportError as exc:
            progress.note(f"  the QAT graph did not export ({exc}); calibrating its weights "
                          "again instead")
    src = _preprocessed_once(job.fp32_file())
    cache = _calibration_cache(src, job)
    reader = None if cache.exists() else _Reader(src, job)
    tail = _tail(src) if job.options.get("float_tail") else []
    with quiet():
        quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibration_cache_path=str(cache),
                        reduce_range=True,
                        nodes_to_exclude=[*job.options.get("keep_float", []), *tail],
                        nodes_to_quantize=list(job.options.get("quantize_only", [])))
    if job.options.get("keep_float"):
        float_tensors(out, job.options["keep_float"])
    return out


def _tail(path: Path) -> list[str]:
    """The nodes after the last weighted one (``compress/float_tail.py``): excluded, so
    the last convs keep their quantized output and the decoding reads it in float."""
    import onnx

    from compress.float_tail import onnx_tail

    return onnx_tail(onnx.load(str(path), load_external_data=False))


def _from_qat(graph: torch.fx.GraphModule, job: QuantizeJob, out: Path) -> Path:
    """The int8 file of a QAT student: its trained fake-quantized graph converted and
    exported as QDQ (per-channel int8 weights, activations at the ranges QAT learnt:
    ``compress/qat.py``) at the target's opset, in the form ONNX Runtime's fast kernels
    take (``export/onnx_qdq.py``)."""
    import onnx
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from export.onnx_qdq import fast_qdq

    with quiet() as captured:
        try:
            converted = convert_pt2e(copy.deepcopy(graph).eval(), fold_quantize=False)
            dynamo_export(converted, job.example[:1], out, job.target.opset)
            onnx.save(fast_qdq(onnx.load(str(out)))[0], str(out))
            return out
        except Exception as exc:  # torchao and the exporter raise many unrelated types
            failure = exc
    raise export_failure("onnx", failure, captured.text)


def float_tensors(path: Path, nodes: list[str]) -> int:
    """Leave every activation tensor that ``nodes`` read or write in float: remove its
    QuantizeLinear -> DequantizeLinear pair and feed its consumers the float tensor.
    Returns how many tensors changed.

    ``nodes_to_exclude`` alone keeps a node's own arithmetic float, but ORT's QDQ
    inserts the pair on a tensor when ANY neighbour is quantized: excluding a SiLU's
    Mul between two quantized convs left all its tensors quantized and the file
    identical to full int8. The sensitivity ranking quantizes one node at a time, i.e.
    exactly the tensors it touches; keeping it in float undoes exactly those (its
    int8 neighbours then read that tensor in float, as ORT runs them unfused)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    wanted = set(nodes)
    floats: set[str] = set()  # the float tensors (a QuantizeLinear's input) to keep
    for node in graph.node:
        if node.name not in wanted:
            continue
        for name in node.input:  # DQ(Q(float)) -> node
            dq = producer.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = producer.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    floats.add(q.input[0])
        for name in node.output:  # node -> Q -> DQ
            if any(c.op_type == "QuantizeLinear" for c in consumers.get(name, [])):
                floats.add(name)
    outputs = {o.name for o in graph.output}
    drop, rename = [], {}
    for tensor in floats:
        for q in [c for c in consumers.get(tensor, []) if c.op_type == "QuantizeLinear"]:
            dqs = [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]
            if len(dqs) != len(consumers.get(q.output[0], [])):
                continue  # the quantized tensor is read directly: leave it
            drop.append(q)
            for dq in dqs:
                drop.append(dq)
                if dq.output[0] in outputs:  # keep the graph output's name
                    rename[tensor] = dq.output[0]
                else:
                    rename[dq.output[0]] = tensor
    if not drop:
        return 0
    dropped = {id(n) for n in drop}
    kept = [n for n in graph.node if id(n) not in dropped]

    def resolved(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for n in kept:
        n.input[:] = [resolved(i) for i in n.input]
        n.output[:] = [resolved(o) for o in n.output]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input}
    orphans = {i for n in drop for i in n.input} - used  # the pairs' scales and zero points
    initializers = [t for t in graph.initializer if t.name not in orphans]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.save(model, str(path))
    return len(floats)


def quantized_nodes(path: Path) -> list[str]:
    """The nodes of a QDQ file that ORT quantized (those fed by a DequantizeLinear), in
    graph order: the names ``keep_float`` and ``quantize_only`` take."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in graph.node
            if n.name and n.op_type not in QDQ_OPS and any(i in dequantized for i in n.input)]


def ort_peer_default(job: QuantizeJob, out: Path) -> Path:
    """``quantize_static`` with every option at its default (the peer baseline)."""
    from onnxruntime.quantization import quantize_static

    src = job.fp32_file()
    with quiet():
        quantize_static(str(src), str(out), _Reader(src, job))
    return out


def ort_dynamic(job: QuantizeJob, out: Path) -> Path:
    """Dynamic int8: int8 weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _preprocessed(job.fp32_file(), out.with_name(out.stem + ".pre.onnx"))
    with quiet():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
    return out


def ort_float16(job: QuantizeJob, out: Path) -> Path:
    """float16 weights and compute, float32 inputs and outputs (for GPU/NPU providers)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(job.fp32_file())), keep_io_types=True)
    onnx.save(model, str(out))
    return out


def onnx_float(job: QuantizeJob, out: Path) -> Path:
    """The float32 export itself."""
    return job.fp32_file()


for _q in (
    Quantizer("float", "onnx", "fp32", onnx_float, summary="fp32 export"),
    Quantizer("ort-fp16", "onnx", "fp16", ort_float16, summary="ORT float16 converter"),
    Quantizer("ort-static", "onnx", "int8", ort_static,
              summary="ORT quantize_static QDQ, per-channel s8 weights, u8 activations",
              layers=lambda job, path: quantized_nodes(path)),
    Quantizer("ort-peer-default", "onnx", "int8", ort_peer_default, default=False,
              summary="ORT quantize_static with defaults (peer baseline)"),
    Quantizer("ort-dynamic", "onnx", "int8-dynamic", ort_dynamic,
              summary="ORT quantize_dynamic, s8 weights"),
):
    register_quantizer(_q)
