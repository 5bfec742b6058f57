"""Structured pruning with torch-pruning: channels are removed for real (smaller, faster
files), following the dependency graph so residual adds and depthwise groups stay valid.

The target is a reduction of a measure (MACs, or torch's batch-1 latency): the pruner
steps until the measure falls to ``(1 - ratio)`` of the original. The classifier (any
layers producing the model's outputs, every head of a detector) and user-named layers
are never pruned.
"""

from __future__ import annotations

import copy
import fnmatch
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from compress.errors import CompressError
from compress.recipe import PruneConfig
from compress.registry import Registry

IMPORTANCE: Registry[Callable[[], object]] = Registry("pruning importance", CompressError)
MEASURES: Registry[Callable[[torch.nn.Module, torch.Tensor], float]] = Registry(
    "pruning measure", CompressError)


@IMPORTANCE.register("magnitude-l2")
def _magnitude_l2() -> object:
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=2)


@IMPORTANCE.register("magnitude-l1")
def _magnitude_l1() -> object:
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=1)


@IMPORTANCE.register("bn-scale")
def _bn_scale() -> object:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


@MEASURES.register("macs")
def count_macs(model: torch.nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass on ``example`` (torch-pruning's count, plus
    the attention products of pruned attention blocks, which it does not see)."""
    return _macs_and_params(model, example)[0]


@MEASURES.register("latency")
def torch_latency_ms(model: torch.nn.Module, example: torch.Tensor, runs: int = 30) -> float:
    """Median eager batch-1 latency on one thread (a cheap proxy while pruning)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(3):
                model(example)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                model(example)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times) * 1e3


@dataclass
class PruneResult:
    """The pruned model and what pruning achieved."""

    model: torch.nn.Module
    ratio: float
    measure: str
    before: float
    after: float
    macs_before: float
    macs_after: float
    params_before: int
    params_after: int
    steps: int
    structure: str = "channels"
    attention: list[dict[str, Any]] = field(default_factory=list)
    exhausted: str = ""  # why the target was out of reach, when it was

    def summary(self) -> dict[str, Any]:
        """Plain JSON figures for the report."""
        out: dict[str, Any] = {
            "ratio": self.ratio, "measure": self.measure, "structure": self.structure,
            "achieved_reduction": round(1 - self.after / self.before, 4),
            "macs_before": int(self.macs_before), "macs_after": int(self.macs_after),
            "params_before": self.params_before, "params_after": self.params_after,
            "steps": self.steps}
        if self.attention:
            out["attention"] = self.attention
        if self.exhausted:
            out["exhausted"] = self.exhausted
        return out


def output_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The convolutions and linear layers whose results reach a model output without passing
    through another one: a classifier's last layer, every box and class branch of a
    detector's heads, each head of a multi-output model. Found on the model's traced graph;
    empty when the model cannot be traced (``protected_layers`` still keeps the classifier's)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow and the like: fx cannot trace every model
        return []
    found: dict[int, torch.nn.Module] = {}
    seen = set()
    stack = [n for node in graph.nodes if node.op == "output" for n in node.all_input_nodes]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        module = model.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, torch.nn.Linear | torch.nn.Conv1d | torch.nn.Conv2d):
            found[id(module)] = module
            continue
        stack.extend(node.all_input_nodes)
    return list(found.values())


def protected_layers(model: torch.nn.Module, example: torch.Tensor,
                     patterns: list[str]) -> list[torch.nn.Module]:
    """Layers never pruned: those producing the outputs (a classifier's last layer, every
    head of a detector or multi-output model) and the named ones."""
    from compress.outputs import as_list

    with torch.no_grad():
        outputs = as_list(model.eval()(example))
    width = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].ndim == 2 else None
    protected = {id(m): m for m in output_layers(model)}
    for name, module in model.named_modules():
        produces_output = width is not None and (
            (isinstance(module, torch.nn.Linear) and module.out_features == width)
            or (isinstance(module, torch.nn.Conv2d) and module.out_channels == width
                and module.groups == 1))
        named = bool(name) and any(fnmatch.fnmatchcase(name, p) for p in patterns)
        if produces_output or named:
            protected[id(module)] = module
    return list(protected.values())


def prune(model: torch.nn.Module, example: torch.Tensor, cfg: PruneConfig, ratio: float,
          original: float | None = None) -> PruneResult:
    """A pruned copy of ``model`` whose measure is at most ``(1 - ratio)`` of the original's.

    ``original`` is the original model's measure when ``model`` is itself already a
    pruned student (progressive pruning); by default ``model`` is the original. A model
    with attention blocks loses heads and feed-forward width (``compress/attention.py``)
    unless ``cfg.attention`` is off; others lose channels (torch-pruning).
    """
    from compress import attention

    student = copy.deepcopy(model).eval()
    measure = MEASURES.get(cfg.measure)
    after = measure(student, example)
    before = original if original is not None else after
    macs_before, params_before = _macs_and_params(student, example)
    target = (1 - ratio) * before
    spec = cfg.attention
    shaped = [b.describe() for b in attention.blocks(student)]
    if shaped and spec.enabled and (spec.heads or spec.ffn):
        steps, structure = 0, "attention"
        why = "the attention blocks are at their least (heads and feed-forward width)"
        if ratio > 0 and after > target:
            student, after, _ = attention.prune_attention(
                student, example, measure, target,
                attention.Cut(0.0, spec.heads, spec.ffn, cfg.round_to or 1),
                cfg.max_channel_ratio)
            steps = 1
        kept = [{**b.describe(), "heads_before": s["heads"], "ffn_before": s["ffn"]}
                for b, s in zip(attention.blocks(student), shaped, strict=True)]
    else:
        structure, kept = "channels", []
        steps, after = _prune_channels(student, example, cfg, measure, after, target, ratio)
        why = (f"channel pruning stopped after {steps} steps (max_channel_ratio "
               f"{cfg.max_channel_ratio:g})")
    macs_after, params_after = _macs_and_params(student, example)
    return PruneResult(student, ratio, cfg.measure, before, after, macs_before, macs_after,
                       params_before, params_after, steps, structure, kept,
                       _exhausted(ratio, before, after, why))


def _prune_channels(student: torch.nn.Module, example: torch.Tensor, cfg: PruneConfig,
                    measure: Callable[[torch.nn.Module, torch.Tensor], float], after: float,
                    target: float, ratio: float) -> tuple[int, float]:
    """torch-pruning's steps on ``student`` (in place) until its measure is at most
    ``target``; the steps taken and the measure reached."""
    import torch_pruning as tp

    steps = 0
    if ratio > 0 and after > target:
        pruner = tp.pruner.MetaPruner(
            student, example, importance=IMPORTANCE.get(cfg.importance)(),
            pruning_ratio=cfg.max_channel_ratio, iterative_steps=cfg.steps,
            ignored_layers=protected_layers(student, example, cfg.protect),
            round_to=cfg.round_to)
        while after > target and steps < cfg.steps:
            pruner.step()
            steps += 1
            after = measure(student, example)
    return steps, after


def _macs_and_params(model: torch.nn.Module, example: torch.Tensor) -> tuple[float, int]:
    """``count_macs`` and the parameter count, from one torch-pruning count."""
    import torch_pruning as tp

    from compress.attention import attention_macs

    macs, params = tp.utils.count_ops_and_params(model, example)
    return float(macs) + attention_macs(model, example), int(params)


EXHAUSTED_SLACK = 0.01  # a reduction this short of the target is still the target


def _exhausted(ratio: float, before: float, after: float, why: str) -> str:
    """Why pruning could not reach ``ratio`` (the reduction it did reach), or ''."""
    reached = 1 - after / before if before else 0.0
    if ratio <= 0 or reached >= ratio - EXHAUSTED_SLACK:
        return ""
    return f"ratio {ratio:g} asked, {reached:.3f} reached: {why}"
