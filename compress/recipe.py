"""The build recipe: typed, validated configs for each step, loadable from YAML, round-tripping
through JSON.

A recipe fixes or bounds each step of ``edgekit build``::

    version: 1
    prune:    {search: adaptive, measure: macs, protect: ["classifier*"]}   # or ratios: [0, 0.5]
    distill:  {temperature: 4.0, alpha: 0.7, epochs: 6, schedule: cosine, patience: 2}
    quantize: {precisions: [int8], methods: [default, inc], mixed_precision: {enabled: false}}
    search:   {formats: [onnx, tflite], latency_runs: 100}

Every field has a default, so an empty file (or no ``--recipe``) is the default recipe.
Names that point into registries (importance criteria, schedules, quantizer methods)
are checked by ``techniques.check_names`` before any work starts.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compress.errors import RecipeError
from edge_agent.contracts.vocab import FORMATS, PRECISIONS
from edge_agent.errors import first_line

RECIPE_VERSION = 1
Precision = Literal[PRECISIONS]  # the shared vocabularies (edge_agent.contracts.vocab)
Format = Literal[FORMATS]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RatioRange(_Config):
    """``count`` evenly spaced prune ratios from ``min`` to ``max`` (inclusive)."""

    min: float = Field(ge=0.0, lt=1.0)
    max: float = Field(ge=0.0, lt=1.0)
    count: int = Field(default=3, ge=1, le=20)

    @model_validator(mode="after")
    def _ordered(self) -> RatioRange:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self

    def values(self) -> list[float]:
        """The ratios this range stands for."""
        if self.count == 1:
            return [self.min]
        step = (self.max - self.min) / (self.count - 1)
        return [round(self.min + i * step, 4) for i in range(self.count)]


class AdaptiveConfig(_Config):
    """The adaptive prune search (``prune.search: adaptive``, the default).

    Ratio ``first`` is tried first; while the distilled student stays within tolerance
    (on the selection split) the next ratio keeps ``keep_factor`` of the MACs the last
    one kept (0.5 -> 0.7 -> 0.82 -> ...), up to ``max_ratio``. After the first failure
    it bisects between the last ratio that passed and the first that failed until they
    are ``resolution`` apart. Each student is grown from the last one that passed.
    ``student_share`` is the part of the build's time budget the student search may use.
    Another student is started while at least ``min_fit`` of the last student's seconds
    are left in that share; its distillation stops at the share's end (a student grown
    from a distilled one usually needs fewer epochs than the first). ``distill_longer``:
    when the ratio is bisected with time left, the first failing student is distilled
    for another round of epochs, and the search goes on above it if it then passes.
    """

    first: float = Field(default=0.5, gt=0.0, lt=1.0)
    keep_factor: float = Field(default=0.6, gt=0.0, lt=1.0)
    max_ratio: float = Field(default=0.95, gt=0.0, lt=1.0)
    resolution: float = Field(default=0.04, gt=0.0, lt=1.0)
    max_students: int = Field(default=8, ge=1, le=50)
    student_share: float = Field(default=0.5, gt=0.0, le=1.0)
    min_fit: float = Field(default=0.5, gt=0.0, le=1.0)
    distill_longer: bool = Field(
        default=True, description="when the ratio is bisected with time left, distil the "
        "first failing student longer and go on above it if it passes")


class AttentionPruneConfig(_Config):
    """How attention blocks are pruned (``prune.attention``; ``compress/attention.py``).

    A model with attention blocks (``nn.TransformerEncoderLayer`` and the like) loses
    whole heads and feed-forward hidden units, the same share in every block, and keeps
    its embedding width (the residual stream every layer reads). Off: torch-pruning's
    channel pruning, which shrinks the embedding width instead.
    """

    enabled: bool = True
    heads: bool = True
    ffn: bool = True


class PruneConfig(_Config):
    """Structured pruning (torch-pruning): remove channels until a MAC or latency reduction.

    A ratio of 0.5 with ``measure: macs`` removes channels until the model needs at most
    half of its MACs; ``measure: latency`` does the same with torch's batch-1 latency.
    Ratio 0 keeps the original model (the unpruned candidate). ``progressive``: each
    ratio starts from the distilled student of the next-lower ratio (prune a little,
    distill, prune more), which keeps far more accuracy at high ratios than one cut.

    ``search``: ``adaptive`` (the default when no ``ratios``/``ratio_range`` is given)
    finds the highest ratio within tolerance by itself (``AdaptiveConfig``); ``list``
    (the default when ``ratios`` or ``ratio_range`` is given) tries exactly those ratios.
    """

    enabled: bool = True
    search: Literal["adaptive", "list"] = "adaptive"
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)
    progressive: bool = True
    ratios: list[float] = Field(default_factory=lambda: [0.0, 0.5], min_length=1)
    ratio_range: RatioRange | None = None
    measure: str = "macs"
    importance: str = "magnitude-l2"
    protect: list[str] = Field(default_factory=list,
                               description="module names (fnmatch patterns) never pruned")
    round_to: int | None = Field(default=8, ge=1)
    max_channel_ratio: float = Field(default=0.9, gt=0.0, lt=1.0)
    attention: AttentionPruneConfig = Field(default_factory=AttentionPruneConfig)
    steps: int = Field(default=40, ge=1, le=500)

    @model_validator(mode="before")
    @classmethod
    def _search_from_ratios(cls, data: Any) -> Any:
        """A hand-written ratio list (or range) means ``search: list`` unless told otherwise."""
        if isinstance(data, dict) and "search" not in data and (
                "ratios" in data or "ratio_range" in data):
            return {**data, "search": "list"}
        return data

    @property
    def adaptive_search(self) -> bool:
        """True when the search finds the ratios itself (pruning on, ``search: adaptive``)."""
        return self.enabled and self.search == "adaptive"

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, value: list[float]) -> list[float]:
        for r in value:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"prune ratio {r} must be in [0, 1)")
        return value

    def candidate_ratios(self) -> list[float]:
        """The prune ratios a ``list`` search tries, sorted, without repeats (0 alone when
        disabled). The adaptive search starts from 0 and finds the others itself."""
        if not self.enabled:
            return [0.0]
        values = self.ratio_range.values() if self.ratio_range else list(self.ratios)
        return sorted(set(values))


class DistillConfig(_Config):
    """Knowledge distillation from the original model (teacher) into the pruned student.

    loss = alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross_entropy(labels)
    """

    enabled: bool = True
    temperature: float = Field(default=4.0, gt=0.0)
    alpha: float = Field(default=0.7, ge=0.0, le=1.0, description="weight of the soft loss")
    epochs: int = Field(default=6, ge=1, le=1000)
    lr: float = Field(default=3e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: str = "cosine"
    patience: int = Field(default=2, ge=1, description="epochs without improvement before stop")
    min_delta: float = Field(default=0.0, ge=0.0)


class IncConfig(_Config):
    """neural-compressor (INC) static int8 on the PyTorch side (method ``inc``)."""

    autotune: bool = True
    max_trials: int = Field(default=4, ge=1, le=100)


class MixedPrecisionConfig(_Config):
    """Mixed precision when int8 costs too much accuracy (``quantize.mixed_precision``).

    When an int8 file drops more than the tolerance on the selection split (or more than
    half of it while a float candidate is within tolerance), its layers are ranked by
    sensitivity (one layer in int8 at a time, ``export/sensitivity.py``) and candidates
    keeping the 1, 2, ... most sensitive layers in float (1, 2, 4, 8, ... when the loss is
    spread over many layers) are measured until one is within tolerance, at most
    ``max_float_layers``. Methods that cannot leave layers in float (``Quantizer.layers``
    is None) are left as they are.

    Time: ``reserve_share`` of the build's time budget is held back from the student
    search and the profiles' walks; each profile gets its part back after its walk. The
    profile's runs share what is then left of the budget equally, the ranking at most half
    of a run's part; layers not ranked by then are listed as ``unranked`` and tried last.
    A profile that needs no run leaves the time to the next. report.json says why a run
    stopped (``stopped``).
    """

    enabled: bool = True
    max_float_layers: int = Field(default=8, ge=1, le=256)
    reserve_share: float = Field(default=0.2, ge=0.0, lt=1.0)


class QatConfig(_Config):
    """Quantization-aware training when mixed precision does not recover int8's loss
    (``quantize.qat``; ``compress/qat.py``).

    The student is fine-tuned with int8 fake quantization for up to ``epochs`` epochs of
    the build's distillation at ``lr_scale`` times its learning rate, within the time
    left of the int8 candidate's run; its int8 files are then made and gated like any
    other. When the epochs do not fit, each is shortened to the batches that do (a QAT
    fine-tune from a distilled student needs few steps), down to ``min_epoch_fraction``
    of the training set; below that QAT is skipped, and the report says so.
    """

    enabled: bool = True
    epochs: int = Field(default=3, ge=1, le=100)
    lr_scale: float = Field(default=0.1, gt=0.0, le=1.0)
    min_epoch_fraction: float = Field(
        default=0.1, gt=0.0, le=1.0,
        description="shortest QAT epoch, as a share of the training set, worth running")


class QuantizeConfig(_Config):
    """Which precisions and quantizer methods the search may try.

    ``methods``: quantizer names; ``default`` stands for every method that is on by
    default (``ort-static``, ``litert-pt2e``, ...). ``inc`` and the ``*-peer-default``
    methods are opt-in: ``methods: [default, inc]``.
    """

    precisions: list[Precision] = Field(
        default_factory=lambda: list(PRECISIONS), min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    calibration_samples: int = Field(default=256, ge=1)
    float_tail: bool = Field(
        default=True, description="leave the operations after the last weighted layer (a "
        "detector's decoding) in float in int8 files (compress/float_tail.py)")
    inc: IncConfig = Field(default_factory=IncConfig)
    mixed_precision: MixedPrecisionConfig = Field(default_factory=MixedPrecisionConfig)
    qat: QatConfig = Field(default_factory=QatConfig)


class SearchConfig(_Config):
    """How candidates are measured and which formats are allowed."""

    formats: list[Format] = Field(default_factory=lambda: list(FORMATS), min_length=1)
    latency_runs: int = Field(default=100, ge=5)
    latency_warmup: int = Field(default=10, ge=0)
    latency_rounds: int = Field(default=5, ge=1, le=50)
    cap_threads_to_host: bool = Field(
        default=True, description="never time with more threads than this host has cores")
    max_candidates: int | None = Field(default=None, ge=1)


class Recipe(_Config):
    """The whole recipe; ``version`` lets later edgekit releases read older files."""

    version: Literal[1] = RECIPE_VERSION
    prune: PruneConfig = Field(default_factory=PruneConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)

    def to_json(self) -> str:
        """JSON text that ``Recipe.from_json`` reads back to an equal recipe."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Parse JSON written by ``to_json`` (or by hand); errors name the field."""
        try:
            return cls.model_validate(json.loads(text))
        except ValueError as exc:
            raise RecipeError(f"recipe JSON: {describe(exc)}") from exc

    @classmethod
    def from_dict(cls, doc: Any, where: str = "recipe") -> Recipe:
        """Validate a decoded mapping; errors name the field and suggest a near spelling."""
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise RecipeError(f"{where}: expected a mapping of recipe sections at the top level")
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise RecipeError(f"{where}: {describe(exc)}") from exc


def load_recipe(path: Path | None) -> Recipe:
    """The recipe in a YAML (or JSON) file, or the default recipe when ``path`` is None."""
    if path is None:
        return Recipe()
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = first_line(exc)
        raise RecipeError(f"recipe {path}: cannot read YAML: {reason}") from exc
    return Recipe.from_dict(doc, f"recipe {path}")


def describe(exc: Exception) -> str:
    """One line naming the first bad field of a pydantic error, with a spelling hint."""
    if not isinstance(exc, ValidationError):
        return first_line(exc)
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"field '{loc}': unknown field{_spelling_hint(first['loc'])}"
    got = first.get("input")
    got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"field '{loc}': {first['msg']}{got_text}"


def _spelling_hint(loc: tuple) -> str:
    model: type[BaseModel] | None = Recipe
    for part in loc[:-1]:
        info = model.model_fields.get(str(part)) if model else None
        annotation = getattr(info, "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(
            annotation, BaseModel) else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
