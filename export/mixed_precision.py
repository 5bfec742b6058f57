"""Mixed precision: the search's ``mixed`` hook for int8 candidates that cost too much.

For an int8 candidate whose method can leave layers in float (``Quantizer.layers``),
rank the layers its file quantized by sensitivity on the selection split
(``export/sensitivity.py``, at most half the run's time), then make candidates that keep
the 1, 2, 3, ... most sensitive layers in float (1, 2, 4, 8, ... when the loss is spread
over many layers: ``group_sizes``) (``keep_float``: ONNX Runtime's ``nodes_to_exclude`` for
``ort-static``, plus the QDQ pairs on the tensors those nodes read or write, which ORT
would otherwise keep for their int8 neighbours; PT2E annotation skipping those modules
for ``litert-pt2e``)
until one is within the floor, at most ``max_float_layers``. Each is an ordinary
candidate of the ``Evaluator``: the same file cache, parity figures, gate and latency
ranking as every other, so a mixed file slower than fp16 loses to fp16.

Why this and not NNCF's ``quantize_with_accuracy_control`` or INC's fp32 fallback:
both quantize the model again through their own pipelines (NNCF's ONNX backend inserts
its own quantizers; INC's fallback lives in its own tuning loop, and its ONNX Runtime
path is not part of the ``neural-compressor[pt]`` install used here), so the file they
return would not be the ``ort-static`` / ``litert-pt2e`` file the search measured and
the device runs, and each would be a second, heavier dependency of the build. Their
idea is kept: rank layers, then revert the most sensitive ones to float until a
``max_drop`` holds. Their documented ranking reverts one layer at a time; with ORT's
QDQ insertion that misses a tensor shared by two layers (``export/sensitivity.py``), so
the ranking here quantizes one layer at a time instead. The quantizer is the one the
candidate already uses, with its own include / exclude options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from compress import progress
from compress.errors import CompressError
from compress.evaluation import score
from compress.outputs import Outputs, to_torch
from compress.recipe import MixedPrecisionConfig, QatConfig
from compress.search import Candidate, MixedRun, Outcome, SearchResult, within_tolerance
from compress.techniques import Student, Students
from export.errors import ExportError
from export.evaluate import Evaluator
from export.registry import Quantizer, exporter_for, quantizers_for
from export.runner import ExportedModel
from export.sensitivity import SensitivityRanking, rank_layers


class MixedPrecision:
    """The search's mixed-precision hook, measuring through the build's ``Evaluator``;
    with ``students`` and QAT on, quantization-aware training when mixing falls short."""

    def __init__(self, evaluator: Evaluator, config: MixedPrecisionConfig,
                 students: Students | None = None, qat: QatConfig | None = None) -> None:
        self.evaluator, self.config = evaluator, config
        self.students, self.qat_config = students, qat
        self.out_of_time: Callable[[], bool] = lambda: False  # set per run (its share)

    def __call__(self, candidate: Candidate, student: Student, floor: float,
                 runs_left: int = 1) -> MixedRun | None:
        """Rank the candidate's layers, then keep the fewest in float that reach ``floor``;
        failing that, or when the loss is spread over many layers (a mix at the floor of
        the selection split is then at the edge of the gate's), a QAT candidate too.
        Within an equal part of the time left for this and the profile's other runs
        (ranking, mixing and QAT a part each)."""
        quantizer = _quantizer(candidate)
        mixing = self.config.enabled and quantizer.layers is not None
        qat = self.students is not None and self.qat_config is not None \
            and self.qat_config.enabled
        if not (mixing or qat):
            return None
        budget = self.evaluator.budget
        left = max(budget.left(), 0.0)
        share = left / max(runs_left, 1)
        started = budget.elapsed()
        ends = _phase_ends(started, share, mixing, qat)
        tried: list[Candidate] = []
        report: dict[str, Any] = {}
        if mixing:
            tried, report = self.mix(candidate, student, floor, quantizer, ends, (share, left))
            if "error" in report or (report["reached_floor"] and not qat) \
                    or (report["reached_floor"] and report["loss"] == "concentrated"):
                return MixedRun(tried, report)
        if qat:
            end = ends["qat"]
            if not self.students.tried(candidate.ratio, "qat"):
                # the ratio's first QAT serves every run after it (the student is made once):
                # it may take the QAT part of all of them, not only of this one
                end = max(end, budget.elapsed() + QAT_PART * max(budget.left(), 0.0))
            made, report["qat"] = self.quantization_aware(candidate, end)
            report["qat"]["why"] = _why_qat(report)
            tried += made
        return MixedRun(tried, report)

    def mix(self, candidate: Candidate, student: Student, floor: float, quantizer: Quantizer,
            ends: dict[str, float], figures: tuple[float, float]
            ) -> tuple[list[Candidate], dict[str, Any]]:
        """The sensitivity ranking, then the mixed candidates; the run's report."""
        budget = self.evaluator.budget
        self.out_of_time = lambda: budget.elapsed() > ends["rank"] or budget.left() <= 0
        try:
            full = self.evaluator.artifact(candidate, student)
            with self.evaluator.budget.phase("sensitivity"):
                job = self.evaluator.job(candidate, student, full.path.parent, {})
                ranking = self.rank(candidate, student, quantizer, quantizer.layers(job, full.path))
        except ExportError as exc:  # the int8 candidate stays as it was measured
            return [], {"error": f"sensitivity not measured: {exc}"}
        self.out_of_time = lambda: budget.elapsed() > ends["mix"] or budget.left() <= 0
        tried, reached, stopped = self.keep_float(candidate, student, ranking, floor)
        if stopped == "time budget":
            share, left = figures
            stopped = (f"time budget: the run's share ({share:.0f} s of the {left:.0f} s "
                       f"left) was spent"
                       if budget.left() > 0 else "time budget: the build's budget is spent")
        kept = list(tried[-1].keep_float) if reached else []
        progress.note(f"  {candidate.id}: " + (f"{len(kept)} layer(s) in float reach the floor"
                                               if reached else f"no mix within the floor "
                                               f"({len(tried)} tried; stopped: {stopped})"))
        return tried, {"sensitivity": ranking.to_dict(), "keep_float": kept,
                       "reached_floor": reached, "stopped": stopped,
                       "loss": "concentrated" if concentrated(ranking) else "spread",
                       "sizes_tried": [len(c.keep_float) for c in tried]}

    def quantization_aware(self, candidate: Candidate, end: float
                           ) -> tuple[list[Candidate], dict[str, Any]]:
        """The candidate made from the ratio's QAT student (made once per ratio, within
        ``end`` on the budget's clock), and what QAT did or why it did not run."""
        assert self.students is not None
        budget = self.evaluator.budget
        progress.note(f"  {candidate.id}: quantization-aware training")
        try:
            with budget.phase("qat"):
                qat = self.students.variant(candidate.ratio, "qat",
                                            time_left=lambda: min(end - budget.elapsed(),
                                                                  budget.left()))
        except CompressError as exc:
            progress.note(f"  {candidate.id}: no QAT: {exc}")
            return [], {"skipped": str(exc)}
        summary = dict(qat.steps["qat"])
        if summary.get("best_epoch") == 0:
            # the student's own weights, but not full int8's file: QAT's observers averaged
            # the ranges over training batches (min/max calibration takes the extremes); on
            # the detector that graph scored 0.834 against full int8's 0.807
            summary["note"] = (f"training did not raise the fake-quantized metric in "
                               f"{summary.get('epochs_run')} epoch(s); the files keep the "
                               "student's weights at the ranges QAT's observers learnt")
        return [replace(candidate, variant="qat", keep_float=())], summary

    def rank(self, candidate: Candidate, student: Student, quantizer: Quantizer,
             layers: list[str]) -> SensitivityRanking:
        """Each layer in int8 alone, scored on the selection split in the real runtime."""
        evaluator = self.evaluator
        reference = evaluator.torch_outputs(student)
        float_metric = score(evaluator.data.metric, to_torch(reference), evaluator.data.val_y)
        folder = evaluator.workdir / student.key / "sensitivity"
        folder.mkdir(parents=True, exist_ok=True)
        names = {layer: i for i, layer in enumerate(layers)}
        suffix = exporter_for(candidate.format).suffix

        def probe(layer: str) -> tuple[float, Outputs]:
            out = folder / f"{candidate.method}-only{names[layer]}{suffix}"
            job = evaluator.job(candidate, student, folder, {"quantize_only": [layer]})
            path = evaluator.quantize(quantizer, job, out, candidate.format)
            outputs = ExportedModel(candidate.format, path,
                                    candidate.target.runtime_options()).predict(
                evaluator.data.val_x.numpy())
            path.unlink(missing_ok=True)
            return score(evaluator.data.metric, to_torch(outputs), evaluator.data.val_y), outputs

        int8 = evaluator.artifact(candidate, student).metric
        progress.note(f"  {candidate.id}: sensitivity of {len(layers)} layers")
        return rank_layers(layers, probe, float_metric, int8, reference, self.out_of_time)

    def keep_float(self, candidate: Candidate, student: Student, ranking: SensitivityRanking,
                   floor: float) -> tuple[list[Candidate], bool, str]:
        """Candidates keeping the first layers of the ranking in float, measured until one
        is within ``floor`` (True) or the limit or the budget is reached; why it stopped."""
        order = ranking.order()
        tried: list[Candidate] = []
        for n in group_sizes(ranking, floor, self.config.max_float_layers):
            mixed = replace(candidate, keep_float=tuple(order[:n]))
            tried.append(mixed)
            if within_tolerance(self.evaluator.accuracy(mixed, student), floor):
                return tried, True, f"reached the floor with {n} layer(s) in float"
            if self.out_of_time():
                return tried, False, "time budget"
        limit = min(self.config.max_float_layers, len(order))
        return tried, False, (f"max_float_layers ({limit}) reached"
                              if limit < len(order) else "every layer in float")


CONCENTRATED = 0.5  # a layer alone carrying this share of the loss: grow one at a time


def concentrated(ranking: SensitivityRanking) -> bool:
    """Whether the most sensitive layer alone carries ``CONCENTRATED`` of int8's loss."""
    return bool(ranking.layers) and (ranking.layers[0].share or 0.0) >= CONCENTRATED


def _why_qat(report: dict[str, Any]) -> str:
    if "reached_floor" not in report:
        return "mixed precision is off or cannot leave this method's layers in float"
    if not report["reached_floor"]:
        return "no mix reached the floor"
    return ("the loss is spread over many layers, so the mix that reached the floor on the "
            "selection split is at the edge of the gate's: QAT competes with it")


QAT_PART = 0.4  # of a run's time, for QAT when mixing runs too


def _phase_ends(started: float, share: float, mixing: bool, qat: bool) -> dict[str, float]:
    """When (on the budget's clock) the ranking, the mixing and QAT must end: ranking and
    mixing half of the run's part each without QAT; 0.3, 0.3 and 0.4 of it with."""
    cuts = (0.3, 1 - QAT_PART) if qat else (0.5, 1.0)
    if not mixing:
        cuts = (0.0, 0.0)
    return {"rank": started + share * cuts[0], "mix": started + share * cuts[1],
            "qat": started + share}


def group_sizes(ranking: SensitivityRanking, floor: float, limit: int) -> list[int]:
    """How many of the ranked layers each mixed candidate keeps in float, at most ``limit``.

    When one layer carries much of the loss (share >= ``CONCENTRATED``) the candidates
    grow one layer at a time (1, 2, 3, ...): the fewest that reach the floor. When the
    loss is spread over many layers (the detector: the largest single-layer drop is a
    sixth of the loss) one more layer barely moves the metric, so the groups double
    (n, 2n, 4n, ... and the limit), starting at the fewest layers whose shares add up
    to what the floor needs back."""
    limit = min(limit, len(ranking.order()))
    if limit < 1:
        return []
    shares = [max(s.share or 0.0, 0.0) for s in ranking.layers]
    if concentrated(ranking):
        return list(range(1, limit + 1))
    loss = ranking.float_metric - ranking.int8_metric
    needed = (floor - ranking.int8_metric) / loss if loss > 0 else 1.0
    start, total = 1, 0.0
    for n, share in enumerate(shares, 1):
        total += share
        if total >= needed:
            start = n
            break
    else:  # the ranked shares never add up (drops are not additive): from one layer
        start = 1
    sizes, n = [], min(start, limit)
    while n < limit:
        sizes.append(n)
        n *= 2
    return [*sizes, limit]


def _quantizer(candidate: Candidate) -> Quantizer:
    return next(q for q in quantizers_for(candidate.format, candidate.precision)
                if q.name == candidate.method)


def mixed_section(result: SearchResult) -> list[dict[str, Any]]:
    """The report's mixed-precision runs of one profile: the trigger, the sensitivity
    ranking, the layers kept in float, and each mixed candidate's figures next to the
    full int8 file's (what keeping those layers in float cost in latency)."""
    by_id = {o.candidate.id: o for o in result.outcomes}
    runs = []
    for run in result.mixed_precision:
        source = by_id[run["candidate"]].candidate
        tried = [_tried(o, by_id.get(replace(o.candidate, keep_float=(), variant="").id))
                 for o in result.outcomes if (o.candidate.keep_float or o.candidate.variant)
                 and _group(o.candidate) == _group(source)]
        runs.append({**run, "tried": tried})
    return runs


def _group(c: Candidate) -> tuple[float, int, str]:
    return c.ratio, c.target_index, c.method


def _tried(outcome: Outcome, full: Outcome | None) -> dict[str, Any]:
    row = {"id": outcome.candidate.id, "variant": outcome.candidate.variant or "ptq",
           "layers_in_float": len(outcome.candidate.keep_float),
           "status": outcome.status, "metric": outcome.metric,
           "latency_ms": outcome.latency_ms}
    if full is not None and full.latency_ms and outcome.latency_ms:
        row["int8_latency_ms"] = full.latency_ms
        row["latency_cost_ms"] = round(outcome.latency_ms - full.latency_ms, 4)
    return row
