"""Measure candidates from their exported files: the search's ``Evaluator``.

Each (student, format, file-affecting target fields, precision, method) is exported,
quantized and run on the selection split once per build; profiles that share a
target reuse the file and its figures. Latency depends on the runtime options, so it
is measured per profile, all of a profile's files together, by the build's
``LatencySource`` (this host, or an agent on the device). The gate split is run
only for ``gate_metric``: the final check of a candidate already selected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compress import progress
from compress.budget import Budget
from compress.evaluation import Metric, predict, score
from compress.memo import made_once
from compress.outputs import Outputs, to_numpy, to_torch
from compress.recipe import Recipe
from compress.search import FAILED, REJECTED, Candidate, Outcome
from compress.tasks import BuildTask, build_task
from compress.techniques import Student
from edge_agent.contracts.task import Task
from edge_agent.errors import first_line
from export.errors import ExportError, export_failure
from export.latency import LatencySource, Timing, host_threads, latency_source
from export.registry import QuantizeJob, exporter_for, quantizers_for
from export.runner import ExportedModel


@dataclass
class EvalData:
    """The fixed inputs of every measurement in one build."""

    example: torch.Tensor           # [1, ...]
    calibration: torch.Tensor       # [N, ...], at most recipe.quantize.calibration_samples
    val_x: torch.Tensor             # the selection split (early stopping, autotune, verdicts)
    val_y: torch.Tensor
    reference: Outputs              # the original model's outputs on val_x (numpy)
    metric: Metric
    gate_x: torch.Tensor | None = None  # the gate split: the reported metric only
    gate_y: torch.Tensor | None = None
    task: BuildTask = field(default_factory=lambda: build_task(Task()))


@dataclass
class Artifact:
    """One exported file and what it computes on the validation set."""

    path: Path
    format: str
    precision: str
    method: str
    metric: float
    parity: dict[str, Any]
    export_problem: str | None = None  # fp32: why it does not compute what torch computes


def layers_key(layers: tuple[str, ...]) -> tuple[str, ...]:
    """A short file-name part for the layers a candidate keeps in float (none: nothing)."""
    if not layers:
        return ()
    digest = hashlib.sha256("\n".join(layers).encode()).hexdigest()[:8]
    return (f"float{len(layers)}", digest)


class Evaluator:
    """Exports, quantizes and measures candidates; caches files and figures for the build."""

    def __init__(self, recipe: Recipe, data: EvalData, workdir: Path,
                 tolerable_loss: float = 0.01, source: LatencySource | None = None,
                 budget: Budget | None = None) -> None:
        self.recipe, self.data, self.workdir = recipe, data, Path(workdir)
        self.tolerable_loss = tolerable_loss
        self.source = source or latency_source()
        self.budget = budget or Budget()
        self._gate_metrics: dict[Path, float] = {}
        self._gate_outputs: dict[Path, Outputs] = {}
        self._artifacts: dict[tuple, Artifact | ExportError] = {}
        self._fp32: dict[tuple, Path] = {}
        self._torch_outputs: dict[str, Outputs] = {}

    def methods_for(self, fmt: str, precision: str) -> list[str]:
        """Registered methods for this format and precision that the recipe allows."""
        wanted = set(self.recipe.quantize.methods)
        return [q.name for q in quantizers_for(fmt, precision)
                if q.name in wanted or ("default" in wanted and q.default)]

    def thread_options(self, target: Any) -> list[int]:
        """The target's thread counts; timed on this host (capped), counts above its cores
        are left out, except the profile's own count (timed at the cap, as before)."""
        options = target.thread_options()
        if self.source.on_device or not self.recipe.search.cap_threads_to_host:
            return options
        timed = {host_threads(target.threads): target.threads}
        for n in options[1:]:
            if n == host_threads(n) and n not in timed:
                timed[n] = n
        return list(timed.values())

    def accuracy(self, candidate: Candidate, student: Student) -> Outcome:
        """Export the candidate and score its file in its runtime; FAILED with the reason."""
        outcome = Outcome(candidate)
        try:
            artifact = self.artifact(candidate, student)
        except ExportError as exc:
            outcome.status, outcome.reason = FAILED, str(exc)
            return outcome
        outcome.artifact, outcome.metric = artifact, artifact.metric
        outcome.size_bytes, outcome.parity = artifact.path.stat().st_size, artifact.parity
        self._check_float_parity(outcome, student)
        return outcome

    def latencies(self, outcomes: list[Outcome]) -> None:
        """Time every outcome's file with its threads (capped on this host) and 1 thread."""
        search = self.recipe.search
        cap = search.cap_threads_to_host and not self.source.on_device
        timings = {}
        for o in outcomes:
            threads = host_threads(o.candidate.target.threads, cap)
            o.threads = threads
            for key, n in (("many", threads), ("one", 1)):
                options = {**o.candidate.target.runtime_options(), "threads": n}
                timings[(id(o), key)] = Timing.of((id(o), key), o.candidate.format,
                                                  o.artifact.path, options)
        if not timings:
            return
        with self.budget.phase("latency"):
            ms = self.source.measure(list(timings.values()), self.data.example.numpy(),
                                     runs=search.latency_runs, warmup=search.latency_warmup,
                                     rounds=search.latency_rounds)
        for o in outcomes:
            o.latency_ms = round(ms[(id(o), "many")], 4)
            o.latency_ms_1thread = round(ms[(id(o), "one")], 4)
            o.latency_source = self.source.description

    def gate_metric(self, outcome: Outcome) -> float:
        """The metric of the outcome's file on the gate split (the selection split when the
        build has no separate gate split), once per file."""
        if self.data.gate_x is None:
            return float(outcome.metric)
        path = outcome.artifact.path
        if path not in self._gate_metrics:
            outputs = self.gate_outputs(outcome)
            self._gate_metrics[path] = score(self.data.metric, to_torch(outputs),
                                             self.data.gate_y)
        return self._gate_metrics[path]

    def gate_outputs(self, outcome: Outcome) -> Outputs:
        """The outcome's file's outputs on the gate split (numpy), run once per file."""
        path = outcome.artifact.path
        if path not in self._gate_outputs:
            with self.budget.phase("evaluate"):
                model = ExportedModel(outcome.candidate.format, path,
                                      outcome.candidate.target.runtime_options())
                self._gate_outputs[path] = model.predict(self.gate_x.numpy())
        return self._gate_outputs[path]

    @property
    def gate_x(self) -> torch.Tensor:
        """The gate split's inputs (the selection split's when there is no gate split)."""
        return self.data.gate_x if self.data.gate_x is not None else self.data.val_x

    @property
    def gate_y(self) -> torch.Tensor:
        """The gate split's labels (the selection split's when there is no gate split)."""
        return self.data.gate_y if self.data.gate_y is not None else self.data.val_y

    def artifact(self, candidate: Candidate, student: Student) -> Artifact:
        """The candidate's file and figures, made once (failures are remembered too)."""
        exporter = exporter_for(candidate.format)
        key = (student.key, candidate.format, *exporter.file_key(candidate.target),
               candidate.precision, candidate.method, *layers_key(candidate.keep_float))
        return made_once(self._artifacts, key, lambda: self._make(candidate, student, key),
                         ExportError)

    def _make(self, candidate: Candidate, student: Student, key: tuple) -> Artifact:
        quantizer = next(q for q in quantizers_for(candidate.format, candidate.precision)
                         if q.name == candidate.method)
        exporter = exporter_for(candidate.format)
        out = self.workdir / student.key / ("-".join(key[1:]) + exporter.suffix)
        out.parent.mkdir(parents=True, exist_ok=True)
        job = self.job(candidate, student, out.parent,
                       {"keep_float": list(candidate.keep_float)} if candidate.keep_float else {})
        progress.note(f"  exporting {student.key} {candidate.format}/{candidate.precision} "
                      f"({candidate.method})")
        with self.budget.phase("export"):
            path = self.quantize(quantizer, job, out, candidate.format)
        try:
            with self.budget.phase("evaluate"):
                outputs = ExportedModel(candidate.format, path,
                                        candidate.target.runtime_options()).predict(
                    self.data.val_x.numpy())
        except Exception as exc:  # runtimes raise their own types
            raise ExportError(f"{candidate.format} runtime cannot run the exported file: "
                              f"{first_line(exc, 200)}") from exc
        metric = score(self.data.metric, to_torch(outputs), self.data.val_y)
        task, precision = self.data.task, candidate.precision
        figures = {**task.parity(outputs, self.data.reference, precision),
                   "export": task.parity(outputs, self.torch_outputs(student), precision)}
        problem = task.export_problem(outputs, self.torch_outputs(student)) \
            if precision == "fp32" else None
        return Artifact(path, candidate.format, candidate.precision, candidate.method, metric,
                        figures, problem)

    def job(self, candidate: Candidate, student: Student, workdir: Path,
            options: dict[str, Any]) -> QuantizeJob:
        """The quantize job of a candidate's student, with extra quantizer ``options``
        (``keep_float``, ``quantize_only``: see ``Quantizer.layers``; a QAT student's
        trained graph as ``qat_graph``)."""
        return QuantizeJob(model=student.model, example=self.data.example,
                           calibration=self.data.calibration, target=candidate.target,
                           workdir=workdir, fp32_file=lambda: self.fp32_file(candidate, student),
                           evaluate=self._torch_score, tolerable_loss=self.tolerable_loss,
                           options={"inc": self.recipe.quantize.inc,
                                    "float_tail": self.recipe.quantize.float_tail,
                                    **({"qat_graph": student.qat_graph}
                                       if student.qat_graph is not None else {}),
                                    **options})

    @staticmethod
    def quantize(quantizer: Any, job: QuantizeJob, out: Path, fmt: str) -> Path:
        """Run a quantizer; its library's errors become one-line ``ExportError``s."""
        try:
            return quantizer.run(job, out)
        except ExportError:
            raise
        except Exception as exc:  # quantizers raise their libraries' own error types
            raise export_failure(fmt, exc) from exc

    def fp32_file(self, candidate: Candidate, student: Student) -> Path:
        """The float export of ``student`` for the candidate's target, made once."""
        exporter = exporter_for(candidate.format)
        key = (student.key, candidate.format, *exporter.file_key(candidate.target))
        if key not in self._fp32:
            path = self.workdir / student.key / ("-".join([*key[1:], "export"]) + exporter.suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fp32[key] = exporter.export(student.model, self.data.example,
                                              candidate.target, path)
        return self._fp32[key]

    def torch_outputs(self, student: Student) -> Outputs:
        """The student's own torch outputs on the validation set (numpy)."""
        if student.key not in self._torch_outputs:
            self._torch_outputs[student.key] = to_numpy(predict(student.model, self.data.val_x))
        return self._torch_outputs[student.key]

    def _torch_score(self, model: torch.nn.Module) -> float:
        return score(self.data.metric, predict(model, self.data.val_x), self.data.val_y)

    @staticmethod
    def _check_float_parity(outcome: Outcome, student: Student) -> None:
        """An fp32 file must compute what its torch model computes (the export is exact)."""
        if outcome.artifact.export_problem:
            outcome.status, outcome.reason = REJECTED, outcome.artifact.export_problem
