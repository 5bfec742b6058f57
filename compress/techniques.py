"""Student techniques, registered by config type (dispatch through a dict, never by name).

A student is the model a candidate starts from: the original pruned to a ratio and
distilled from the original. Adding a technique is one module: a config class (a
field of the recipe), a handler registered here with ``@technique(ConfigType)``, and
its field name appended to ``STUDENT_STEPS``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from pydantic import BaseModel

from compress import progress
from compress.distill import SCHEDULES, distill
from compress.errors import CompressError, RecipeError
from compress.evaluation import Metric
from compress.memo import made_once
from compress.prune import IMPORTANCE, MEASURES, prune
from compress.recipe import DistillConfig, PruneConfig, Recipe
from compress.registry import Registry

# The recipe fields applied, in order, to make a student.
STUDENT_STEPS = ("prune", "distill")


@dataclass
class StudentData:
    """What the techniques need: the teacher, an example input, the data and the metric;
    ``time_left`` is the seconds the build's budget leaves the student being made (None:
    no limit)."""

    teacher: torch.nn.Module
    example: torch.Tensor
    train: Any
    validation: tuple[torch.Tensor, torch.Tensor]
    metric: Metric
    seed: int = 0
    time_left: Callable[[], float] | None = None
    loss: Any = None  # the task's distillation loss (compress.distill.Loss); None: classifier


@dataclass
class Student:
    """A candidate's starting model, the ratio it was pruned to and what each step did.

    ``parent`` is the student it was made from (progressive pruning), None for the
    original model.
    """

    model: torch.nn.Module
    ratio: float
    changed: bool = False
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    parent: str | None = None
    variant: str = ""  # "" or a VARIANTS name: made from the ratio's student ("qat")
    qat_graph: Any = None  # the "qat" variant's trained fake-quantized graph (torch.fx)

    @property
    def key(self) -> str:
        """A short id: the prune ratio (the rest of the recipe is fixed within one build),
        then the variant (``r0.5-qat``)."""
        return f"r{self.ratio:g}" + (f"-{self.variant}" if self.variant else "")


Handler = Callable[[Any, Student, StudentData], Student]
TECHNIQUES: Registry[Handler] = Registry("technique", RecipeError)


def technique(config_type: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Register the handler that applies configs of ``config_type`` to a student."""
    return TECHNIQUES.register(config_type)


@technique(PruneConfig)
def _apply_prune(cfg: PruneConfig, student: Student, data: StudentData) -> Student:
    if student.ratio <= 0 or not cfg.enabled:
        return student
    original = MEASURES.get(cfg.measure)(data.teacher, data.example)
    result = prune(student.model, data.example, cfg, student.ratio, original)
    student.model, student.changed = result.model, True
    student.steps["prune"] = {**result.summary(), "from": student.parent or "original"}
    progress.note(f"pruned to ratio {student.ratio:g}: MACs {result.macs_before / 1e6:.2f}M -> "
                  f"{result.macs_after / 1e6:.2f}M, params {result.params_before / 1e3:.1f}k -> "
                  f"{result.params_after / 1e3:.1f}k")
    return student


@technique(DistillConfig)
def _apply_distill(cfg: DistillConfig, student: Student, data: StudentData) -> Student:
    if not student.changed or not cfg.enabled:
        return student
    result = distill(student.model, data.teacher, data.train, data.validation, data.metric, cfg,
                     label=f"distilling {student.key}", time_left=data.time_left, loss=data.loss)
    student.steps["distill"] = result.summary()
    progress.note(f"distilled {student.key}: metric {result.best_metric:.4f} at epoch "
                  f"{result.best_epoch}/{result.epochs_run}"
                  + (f" (stopped early: {result.stopped_by})" if result.stopped_early else "")
                  + f", {result.memory_format['memory_format']}")
    return student


def make_student(recipe: Recipe, data: StudentData, ratio: float,
                 base: Student | None = None,
                 time_left: Callable[[], float] | None = None) -> Student:
    """Apply every student step of the recipe, in order, to a copy of ``base`` (a less
    pruned student) or of the teacher, within ``time_left`` (see ``StudentData``).

    The random state is reset from the seed and the ratio first, so a student does not
    depend on what the build did before it (which profile or candidate came first).
    """
    torch.manual_seed(data.seed * 1000 + round(ratio * 1000))
    source = base.model if base is not None else data.teacher
    student = Student(model=copy.deepcopy(source).eval(), ratio=ratio,
                      parent=base.key if base is not None else None)
    data = replace(data, time_left=time_left)
    for name in STUDENT_STEPS:
        cfg = getattr(recipe, name)
        student = TECHNIQUES.get(type(cfg))(cfg, student, data)
    student.model.eval()
    return student


class Students:
    """Makes each student once per build and hands the same one to every target and profile."""

    def __init__(self, recipe: Recipe, data: StudentData) -> None:
        self._recipe = recipe
        self._data = data
        self._cache: dict[float, Student] = {}
        self._variants: dict[tuple[float, str], Student | CompressError] = {}

    def variant(self, ratio: float, name: str,
                time_left: Callable[[], float] | None = None) -> Student:
        """The ``name`` variant of the ratio's student (a ``VARIANTS`` maker), made once
        within ``time_left``; a failure is remembered and raised again."""
        return made_once(self._variants, (ratio, name), lambda: VARIANTS.get(name)(
            self._recipe, self.get(ratio), replace(self._data, time_left=time_left)),
            CompressError)

    def tried(self, ratio: float, name: str) -> bool:
        """Whether the ``name`` variant of the ratio's student was made or failed."""
        return (ratio, name) in self._variants

    def get(self, ratio: float, variant: str = "") -> Student:
        """The student for ``ratio``, made on first use (after its base, when progressive);
        a ``variant`` must have been made with ``variant`` first."""
        if variant:
            return self._variants[(ratio, variant)]
        if ratio not in self._cache:
            base = self._base(ratio)
            self._cache[ratio] = make_student(self._recipe, self._data, ratio, base)
        return self._cache[ratio]

    def grow(self, ratio: float, base_ratio: float,
             time_left: Callable[[], float] | None = None) -> Student:
        """The student for ``ratio`` grown from the student of ``base_ratio`` (the adaptive
        search's last passing ratio; 0 or a non-progressive recipe starts from the teacher),
        distilled within ``time_left``."""
        if ratio not in self._cache:
            progressive = self._recipe.prune.progressive and 0 < base_ratio < ratio
            base = self.get(base_ratio) if progressive else None
            self._cache[ratio] = make_student(self._recipe, self._data, ratio, base, time_left)
        return self._cache[ratio]

    def distill_longer(self, ratio: float,
                       time_left: Callable[[], float] | None = None) -> Student:
        """The ratio's student distilled for another round of the recipe's epochs, from
        where it is (its best epoch is kept: epoch 0 when more training did not help)."""
        student = self.get(ratio)
        result = distill(student.model, self._data.teacher, self._data.train,
                         self._data.validation, self._data.metric, self._recipe.distill,
                         label=f"distilling {student.key} longer", time_left=time_left,
                         loss=self._data.loss)
        student.model.eval()
        student.steps["distill_longer"] = result.summary()
        progress.note(f"distilled {student.key} longer: metric {result.best_metric:.4f} at "
                      f"epoch {result.best_epoch}/{result.epochs_run}")
        return student

    def _base(self, ratio: float) -> Student | None:
        prune_cfg = self._recipe.prune
        lower = [r for r in prune_cfg.candidate_ratios() if 0 < r < ratio]
        if not (prune_cfg.progressive and prune_cfg.enabled and lower):
            return None
        return self.get(max(lower))

    def made(self) -> list[Student]:
        """Every student made so far, by ratio (variants after their ratio's student)."""
        variants = [v for v in self._variants.values() if isinstance(v, Student)]
        return sorted([*self._cache.values(), *variants], key=lambda st: (st.ratio, st.variant))


VariantMaker = Callable[[Recipe, Student, StudentData], Student]
VARIANTS: Registry[VariantMaker] = Registry("student variant", RecipeError)


@VARIANTS.register("qat")
def _qat_variant(recipe: Recipe, base: Student, data: StudentData) -> Student:
    """The student fine-tuned with int8 fake quantization (``compress/qat.py``)."""
    from compress.qat import qat_finetune

    model, summary, graph = qat_finetune(base.model, data.teacher, data.example, data.train,
                                  data.validation, data.metric, recipe.quantize.qat,
                                  recipe.distill, data.time_left, data.loss,
                                  label=f"QAT {base.key}",
                                  float_tail=recipe.quantize.float_tail)
    return Student(model=model, ratio=base.ratio, changed=True,
                   steps={**base.steps, "qat": summary}, parent=base.key, variant="qat",
                   qat_graph=graph)


def check_name(where: str, value: str, registry: Registry[Any]) -> None:
    """A recipe name that must be registered; the error names the field and the choices."""
    if value not in registry:
        known = ", ".join(str(k) for k in registry)
        raise RecipeError(f"recipe field '{where}': unknown {value!r}; known: {known}")


def check_names(recipe: Recipe) -> None:
    """Check every registry-backed name of the recipe before any work starts."""
    check_name("prune.importance", recipe.prune.importance, IMPORTANCE)
    check_name("prune.measure", recipe.prune.measure, MEASURES)
    check_name("distill.schedule", recipe.distill.schedule, SCHEDULES)
