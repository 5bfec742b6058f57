"""TFLite: the exporter (litert-torch, no TensorFlow) and the quantizers that write TFLite
files (litert-torch's PT2E quantizer; ai-edge-quantizer for fp16).

Static int8 through PT2E gives a model with int8 input and output tensors (litert
folds the first quantize and last dequantize into the signature); their scale and
zero-point are read from the file into the manifest's ``quantization`` so the device
can feed it floats. The model keeps torch's NCHW layout and a batch of 1.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from compress import progress
from compress.float_tail import fx_tail
from export.errors import ExportError, export_failure
from export.quiet import quiet
from export.registry import Exporter, QuantizeJob, Quantizer, register_exporter, register_quantizer


def _litert() -> Any:
    import litert_torch

    litert_torch.config.show_progress = False
    return litert_torch


def _convert(model: torch.nn.Module, example: torch.Tensor, path: Path,
             quant_config: Any = None) -> Path:
    with quiet() as captured:
        try:
            edge = _litert().convert(model, (example,), quant_config=quant_config)
            edge.export(str(path))
            return path
        except Exception as exc:  # the converter raises many unrelated types
            failure = exc
    raise export_failure("tflite", failure, captured.text)


def export_tflite(model: torch.nn.Module, example: torch.Tensor, target: Any,
                  path: Path) -> Path:
    """Write ``model`` (float32, batch 1) as a TFLite flatbuffer."""
    return _convert(model.eval(), example[:1], path)


register_exporter(Exporter("tflite", ".tflite", export_tflite, "litert_torch.convert"))


FLOAT_OP_LADDER: tuple[tuple[str, ...], ...] = (
    (),
    ("fixed_qparams",),
    ("mul", "mul_relu"),
    ("fixed_qparams", "mul", "mul_relu", "cat"),
)
"""PT2E annotators to leave out, tried in order while the LiteRT converter refuses the
quantized graph with a "same scale constraint" error. A fixed-qparams op (sigmoid, output
scale 1/256) feeding a layout change whose output has another scale (a detector head's
``sigmoid(x) * stride`` flattened for its output) is the common case: leaving those few
ops in float keeps every conv int8 and converts."""

SAME_SCALE = "same scale constraint"


def _quantizer_without(ops: tuple[str, ...]) -> Any:
    """litert's PT2EQuantizer class, minus the annotators of ``ops`` (those stay float)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    if not ops:
        return PT2EQuantizer
    kept = [op for op in PT2EQuantizer.STATIC_OPS if op not in ops]
    return type(f"PT2EQuantizerFloat_{'_'.join(ops)}", (PT2EQuantizer,), {"STATIC_OPS": kept})


WEIGHTED_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                    torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d)


def pt2e_layers(job: QuantizeJob, path: Path) -> list[str]:
    """The layers PT2E quantizes that mixed precision may leave in float: the student's
    linear and conv modules, by their names in the model (``backbone.0.conv``)."""
    return [name for name, module in job.model.named_modules()
            if name and isinstance(module, WEIGHTED_MODULES)]


def _module_path(node: Any) -> str:
    """The qualified name of the innermost module a graph node comes from ('' at the top).

    A parameter (a ``get_attr`` node: ``stem.0.weight``) has no ``nn_module_stack`` in
    torch.export's graph; its module is its target less the attribute. Without this a
    conv's annotation partition (conv, weight[, bias]) never matched ``quantize_only``
    (litert's conv annotators filter every node of the partition; the linear one only the
    linear node), so a single conv "in int8" was left wholly float."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        return list(stack.values())[-1][0]
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[0]
    return ""


def _selective(base: Any, options: dict[str, Any]) -> Any:
    """``base`` (a PT2EQuantizer class) that annotates only the nodes of the modules in
    ``options["quantize_only"]`` (when given), none of those in ``options["keep_float"]``
    and, with ``options["float_tail"]``, none after the last weighted layer
    (``compress/float_tail.py``).

    litert's own ``set_module_name`` cannot do this here: it refuses a None config, and
    its name filter strips a ``L__self___`` prefix that torch.export no longer writes
    (``L__self__fc1``), so it never matches; this filter reads the module's qualified
    name from the same ``nn_module_stack`` instead."""
    keep_float = tuple(options.get("keep_float") or ())
    only = tuple(options.get("quantize_only") or ())
    float_tail = bool(options.get("float_tail"))
    if not keep_float and not only and not float_tail:
        return base

    def inside(node: Any, names: tuple[str, ...]) -> bool:
        path = _module_path(node)
        return any(path == name or path.startswith(name + ".") for name in names)

    def wanted(node: Any) -> bool:
        return not inside(node, keep_float) and (not only or inside(node, only))

    def annotate(self: Any, model: Any, config: Any, filter_fn: Any = None) -> Any:
        tail = fx_tail(model) if float_tail else set()

        def selected(node: Any) -> bool:
            return node not in tail and wanted(node) and (filter_fn is None or filter_fn(node))
        return base._annotate_all_static_patterns(self, model, config, selected)

    return type(f"{base.__name__}Selective", (base,), {"_annotate_all_static_patterns": annotate})


def _pt2e(job: QuantizeJob, out: Path, per_channel: bool, dynamic: bool = False) -> Path:
    graph = job.options.get("qat_graph")
    if graph is not None and per_channel and not dynamic \
            and not (job.options.get("keep_float") or job.options.get("quantize_only")):
        try:
            return _from_qat(graph, job.example[:1], out)
        except ExportError as exc:
            progress.note(f"  the QAT graph did not convert ({exc}); calibrating its weights "
                          "again instead")
    failure: ExportError | None = None
    for float_ops in FLOAT_OP_LADDER:
        try:
            path = _pt2e_once(job, out, per_channel, dynamic, float_ops)
        except ExportError as exc:
            if SAME_SCALE not in str(exc):
                raise
            failure = failure or exc
            continue
        if float_ops:
            progress.note(f"  LiteRT refused the fully int8 graph ({SAME_SCALE}); converted "
                          f"with {', '.join(float_ops)} left in float")
        return path
    assert failure is not None
    raise failure


def _pt2e_once(job: QuantizeJob, out: Path, per_channel: bool, dynamic: bool,
               float_ops: tuple[str, ...]) -> Path:
    example = job.example[:1]
    with quiet() as captured:  # importing litert-torch prints TensorFlow banners on fd 2
        from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        config = get_symmetric_quantization_config(is_per_channel=per_channel,
                                                   is_dynamic=dynamic)
        quantizer = _selective(_quantizer_without(float_ops), job.options)().set_global(config)
        try:
            graph = prepare_pt2e(torch.export.export(job.model.eval(), (example,)).module(),
                                 quantizer)
            samples = job.calibration_batches(1)
            with torch.no_grad():
                for sample in progress.track(samples, "calibrating (PT2E)", total=len(samples)):
                    graph(sample)
            graph = convert_pt2e(graph, fold_quantize=False)
        except Exception as exc:
            raise export_failure("tflite", exc, captured.text) from exc
    return _convert(graph, example, out, QuantConfig(pt2e_quantizer=quantizer))


def _from_qat(graph: torch.fx.GraphModule, example: torch.Tensor, out: Path) -> Path:
    """The int8 file of a QAT student: its trained fake-quantized graph converted as it
    is, so the activation ranges QAT learnt are the file's scales (``compress/qat.py``)."""
    with quiet() as captured:
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        from compress.qat import qat_quantizer

        try:
            converted = convert_pt2e(copy.deepcopy(graph).eval(), fold_quantize=False)
        except Exception as exc:
            raise export_failure("tflite", exc, captured.text) from exc
    return _convert(converted, example, out, QuantConfig(pt2e_quantizer=qat_quantizer()))


def litert_pt2e(job: QuantizeJob, out: Path) -> Path:
    """Static int8: per-channel symmetric int8 weights, int8 activations, int8 I/O; for a
    QAT student (``job.options["qat_graph"]``) its trained graph, converted.

    Selective: ``job.options["keep_float"]`` names modules left in float,
    ``job.options["quantize_only"]`` the only modules quantized (``pt2e_layers``)."""
    return _pt2e(job, out, per_channel=True)


def litert_peer_default(job: QuantizeJob, out: Path) -> Path:
    """PT2E with litert's default symmetric config (per-tensor weights): the peer baseline."""
    return _pt2e(replace(job, options={**job.options, "float_tail": False}), out,
                 per_channel=False)


def litert_pt2e_dynamic(job: QuantizeJob, out: Path) -> Path:
    """Dynamic-range int8: int8 weights, float activations and I/O."""
    return _pt2e(job, out, per_channel=True, dynamic=True)


def aeq_float16(job: QuantizeJob, out: Path) -> Path:
    """float16 weights via ai-edge-quantizer's float casting (float I/O)."""
    with quiet() as captured:
        from ai_edge_quantizer import qtyping, quantizer

        weights = qtyping.TensorQuantizationConfig(num_bits=16,
                                                   dtype=qtyping.TensorDataType.FLOAT)
        op_config = qtyping.OpQuantizationConfig(
            weight_tensor_config=weights, compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True)
        try:
            qt = quantizer.Quantizer(str(job.fp32_file()))
            qt.update_quantization_recipe(
                regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING, op_config=op_config)
            qt.quantize().export_model(str(out), overwrite=True)
        except Exception as exc:
            raise export_failure("tflite", exc, captured.text) from exc
    return out


def tflite_float(job: QuantizeJob, out: Path) -> Path:
    """The float32 export itself."""
    return job.fp32_file()


for _q in (
    Quantizer("float", "tflite", "fp32", tflite_float, summary="fp32 export"),
    Quantizer("aeq-fp16", "tflite", "fp16", aeq_float16,
              summary="ai-edge-quantizer float casting (fp16 weights)"),
    Quantizer("litert-pt2e", "tflite", "int8", litert_pt2e,
              summary="litert PT2E static, per-channel s8 weights, int8 I/O",
              layers=pt2e_layers),
    Quantizer("litert-peer-default", "tflite", "int8", litert_peer_default, default=False,
              summary="litert PT2E with its default config (peer baseline)"),
    Quantizer("litert-pt2e-dynamic", "tflite", "int8-dynamic", litert_pt2e_dynamic,
              summary="litert PT2E dynamic-range int8"),
):
    register_quantizer(_q)
