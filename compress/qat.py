"""Quantization-aware training (QAT): fine-tune a student with int8 fake quantization.

When full int8 misses the accuracy gate and keeping layers in float does not recover it
(``export/mixed_precision.py``), the build fine-tunes the student with the PT2E QAT
flow of the torch/torchao stack installed here: ``torch.export`` -> torchao's
``prepare_qat_pt2e`` with litert-torch's PT2E quantizer in QAT mode (per-channel
symmetric int8 weights, int8 activations: the scheme of the ``litert-pt2e`` files) ->
a few epochs of the build's own distillation (same teacher, task loss, validation and
time limit) -> the trained weights are copied back into a float copy of the student.

That float copy is a new student (key ``r<ratio>-qat``) that also carries the trained
fake-quantized graph (``Student.qat_graph``). Its int8 files are that graph itself:
converted by LiteRT (``export/tflite.py``), exported as QDQ for ONNX Runtime
(``export/onnx.py``), so the activation ranges QAT learnt are the files' scales.
Calibrating the trained weights again instead threw those ranges away: on the detector the
re-quantized QAT files scored below full int8 (0.817 against 0.823 for LiteRT). Where a
runtime's converter refuses the graph, its file falls back to that re-calibration. Every
file keeps the guarantees of the others: parity with its own torch student at build time
and on the device, and the gate on its own split.

Batch norms are folded into the convolutions before QAT: the files fold them anyway,
and litert-torch's QAT conv-bn annotators do not run on this torchao (they hand
``torch.export`` a function). The student's batch-norm modules become ``Identity``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from compress import progress
from compress.distill import distill
from compress.errors import CompressError
from compress.float_tail import fx_tail
from compress.recipe import DistillConfig, QatConfig

BATCH_NORM_OPS = ("_native_batch_norm_legit_no_training", "batch_norm")
CONV_OPS = ("conv1d", "conv2d", "conv3d")


def fold_batch_norms(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Fold every batch norm that directly follows a convolution into it, in place (the
    batch norm becomes ``Identity``); the (conv, batch norm) module names folded.

    The pairs are read from the ``torch.export`` graph of ``model`` in eval mode, so any
    architecture works, not only ``nn.Sequential`` neighbours. A conv whose output
    also feeds something else is left alone (folding would change that other use)."""
    model.eval()
    graph = torch.export.export(model, (example,)).graph
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_function" or _op(node) not in BATCH_NORM_OPS:
            continue
        conv = node.args[0]
        if getattr(conv, "op", "") != "call_function" or _op(conv) not in CONV_OPS \
                or len(conv.users) != 1:
            continue
        conv_name, bn_name = _module_of(conv), _module_of(node)
        if isinstance(modules.get(conv_name), nn.modules.conv._ConvNd) \
                and isinstance(modules.get(bn_name), nn.modules.batchnorm._BatchNorm):
            pairs.append((conv_name, bn_name))
    for conv_name, bn_name in pairs:
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(modules[conv_name], modules[bn_name])
        _set(model, conv_name, fused)
        _set(model, bn_name, nn.Identity())
    return pairs


def _op(node: Any) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _module_of(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.removeprefix("L['self'].").removeprefix("L__self__.")


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def qat_quantizer(float_tail: bool = True) -> Any:
    """litert-torch's PT2E quantizer in QAT mode, without its conv-bn annotators, leaving
    sigmoids unannotated and, with ``float_tail``, every operation after the last weighted
    layer (``compress/float_tail.py``), as the int8 files do.

    A sigmoid's int8 output has a fixed scale (1/256) that training cannot move, and
    where it feeds a reshape or concat of another scale (a detector head) LiteRT's
    converter refuses the graph ("same scale constraint": ``export/tflite.py``'s
    ``FLOAT_OP_LADDER``). The trained graph must convert as it is, so sigmoids stay
    float from the start."""
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )

    def annotate(self: Any, model: Any, config: Any, filter_fn: Any = None) -> Any:
        tail = fx_tail(model) if float_tail else set()

        def selected(node: Any) -> bool:
            return node.target is not torch.ops.aten.sigmoid.default and node not in tail \
                and (filter_fn is None or filter_fn(node))
        return PT2EQuantizer._annotate_all_static_patterns(self, model, config, selected)

    cls = type("PT2EQuantizerQat", (PT2EQuantizer,),
               {"STATIC_QAT_ONLY_OPS": [], "_annotate_all_static_patterns": annotate})
    return cls().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                               is_qat=True))


def prepare_qat(model: nn.Module, example: torch.Tensor,
                float_tail: bool = True) -> torch.fx.GraphModule:
    """The PT2E QAT graph of ``model`` (fake quantization on weights and activations),
    batch size free, switchable with ``.train()`` / ``.eval()``."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    batch = example[:1].expand(2, *example.shape[1:]).contiguous()
    exported = torch.export.export(model, (batch,),
                                   dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    prepared = prepare_qat_pt2e(exported, qat_quantizer(float_tail))
    allow_exported_model_train_eval(prepared)
    return _observers_follow_mode(prepared)


def _observers_follow_mode(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``train()`` lets the fake quantizers' observers learn ranges; ``eval()`` freezes
    them. torchao's eval only switches dropout and batch norm, so without this each
    validation pass moved the ranges to the validation data and the fake-quantized metric
    QAT keeps its best epoch by came out better than any int8 file (0.831 against 0.823 on
    the detector before any training)."""
    import types

    from torchao.quantization.pt2e import disable_observer, enable_observer

    base_train, base_eval = prepared.train, prepared.eval

    def train(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
        base_train(mode)
        self.apply(enable_observer if mode else disable_observer)
        return self

    def evaluate(self: torch.fx.GraphModule) -> torch.fx.GraphModule:
        base_eval()
        self.apply(disable_observer)
        return self

    prepared.train = types.MethodType(train, prepared)  # type: ignore[method-assign]
    prepared.eval = types.MethodType(evaluate, prepared)  # type: ignore[method-assign]
    return prepared


def batch_seconds(prepared: nn.Module, teacher: nn.Module, train: Any) -> float:
    """Seconds one QAT training step takes (teacher forward, fake-quantized forward and
    backward), timed over two batches of ``train``."""
    prepared.train()
    timed, started = 0, time.monotonic()
    for inputs, _ in train:
        with torch.no_grad():
            teacher(inputs.float())
        out = prepared(inputs.float())
        sum(o.float().sum() for o in (out if isinstance(out, (tuple, list)) else [out])).backward()
        timed += 1
        if timed == 2:
            break
    prepared.zero_grad(set_to_none=True)
    prepared.eval()
    return (time.monotonic() - started) / max(timed, 1)


TRAINING_SHARE = 0.8  # of the time left, for training steps; the rest validates


class Limited:
    """At most ``batches`` batches of ``loader`` per pass (a shuffling loader gives each
    pass other batches): a short QAT epoch."""

    def __init__(self, loader: Any, batches: int) -> None:
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Any:
        for i, batch in enumerate(self.loader):
            if i >= self.batches:
                return
            yield batch


def epoch_plan(step_s: float, batches: int, cfg: QatConfig,
               seconds_left: float | None) -> tuple[int, str]:
    """How many batches each of the ``cfg.epochs`` QAT epochs runs so that they fit in
    ``seconds_left`` (all of them when they fit or there is no limit), and why; raises
    ``CompressError`` when that is under ``cfg.min_epoch_fraction`` of an epoch."""
    full = step_s * batches * cfg.epochs
    if seconds_left is None or full <= seconds_left * TRAINING_SHARE:
        return batches, ""
    fits = int(max(seconds_left, 0.0) * TRAINING_SHARE / (step_s * cfg.epochs))
    if fits < max(1, cfg.min_epoch_fraction * batches):
        raise CompressError(
            f"{cfg.epochs} QAT epoch(s) of at least {cfg.min_epoch_fraction:.0%} of the "
            f"training set take about {full * cfg.min_epoch_fraction:.0f} s, more than the "
            f"{max(seconds_left, 0):.0f} s left of the build's budget")
    return fits, (f"epochs shortened to {fits} of {batches} batches "
                  f"({fits / batches:.0%}) to fit the {seconds_left:.0f} s left")


def qat_finetune(model: nn.Module, teacher: nn.Module, example: torch.Tensor, train: Any,
                 validation: tuple[torch.Tensor, torch.Tensor], metric: Any,
                 cfg: QatConfig, distill_cfg: DistillConfig,
                 time_left: Callable[[], float] | None = None,
                 loss: Any = None, label: str = "QAT", float_tail: bool = True
                 ) -> tuple[nn.Module, dict[str, Any], torch.fx.GraphModule]:
    """A float copy of ``model`` fine-tuned with int8 fake quantization, what QAT did
    (epochs, the fake-quantized metric per epoch, folded batch norms, seconds) and the
    trained fake-quantized graph (its best epoch, observers frozen: ``eval()``).

    Epochs are shortened to fit ``time_left`` (``epoch_plan``); raises ``CompressError``
    when even the shortest worth running does not fit."""
    started = time.monotonic()
    student = copy.deepcopy(model).eval()  # export shares parameters: never train the original
    folded = fold_batch_norms(student, example[:1])
    prepared = prepare_qat(student, example, float_tail)
    batches = len(train) if hasattr(train, "__len__") else 1
    step_s = batch_seconds(prepared, teacher, train)
    per_epoch, shortened = epoch_plan(step_s, batches, cfg,
                                      None if time_left is None else time_left())
    if per_epoch < batches:
        progress.note(f"{label}: {shortened}")
        train = Limited(train, per_epoch)
    config = distill_cfg.model_copy(update={"epochs": cfg.epochs,
                                            "lr": distill_cfg.lr * cfg.lr_scale,
                                            "patience": cfg.epochs})
    result = distill(prepared, teacher, train, validation, metric, config, label=label,
                     time_left=time_left, loss=loss)
    trained = prepared.state_dict()
    missing = [k for k in student.state_dict() if k not in trained]
    if missing:
        raise CompressError(f"QAT graph lost the student's parameters {missing[:3]}; "
                            "turn QAT off with quantize: {qat: {enabled: false}}")
    student.load_state_dict({k: trained[k] for k in student.state_dict()})
    summary = {**result.summary(), "folded_batch_norms": [bn for _, bn in folded],
               "epoch_estimate_s": round(step_s * batches, 2),
               "batches_per_epoch": per_epoch, "training_batches": batches,
               **({"shortened": shortened} if shortened else {}),
               "seconds": round(time.monotonic() - started, 2)}
    progress.note(f"{label}: fake-quantized metric {result.best_metric:.4f} at epoch "
                  f"{result.best_epoch}/{result.epochs_run}")
    return student.eval(), summary, prepared.eval()
