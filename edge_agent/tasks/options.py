"""Per-request options of a prediction: post-processing overrides, the caller's image size,
raw outputs. The same checks serve ``Agent.predict(..., **options)`` and the HTTP query
string (``/v1/predict?score_threshold=0.5&image_size=480,640``), so a bad value is the same
one-line error (HTTP 400) either way."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable

from edge_agent.inputs import InputError

DETECTION_ONLY = ("score_threshold", "iou_threshold", "max_detections", "image_size")


def _fraction(name: str, value: Any) -> float:
    number = _number(name, value, "a number between 0 and 1")
    if not 0.0 <= number <= 1.0:
        raise InputError(f"{name} must be a number between 0 and 1, got {value!r}")
    return number


def _count(name: str, value: Any) -> int:
    number = _number(name, value, "a whole number from 1 to 10000")
    if number != int(number) or not 1 <= number <= 10000:
        raise InputError(f"{name} must be a whole number from 1 to 10000, got {value!r}")
    return int(number)


def _number(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be {what}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be {what}, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return number


def _image_size(name: str, value: Any) -> tuple[int, int]:
    parts = value.split(",") if isinstance(value, str) else value
    what = "[height, width] in pixels (HTTP: image_size=HEIGHT,WIDTH)"
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise InputError(f"{name} must be {what}, got {value!r}")
    sizes = [_number(name, p, what) for p in parts]
    if any(s != int(s) or not 1 <= s <= 100_000 for s in sizes):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return int(sizes[0]), int(sizes[1])


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", ""):
        return False
    raise InputError(f"{name} must be true or false (1 or 0), got {value!r}")


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "score_threshold": _fraction, "iou_threshold": _fraction, "max_detections": _count,
    "image_size": _image_size, "raw": _flag}


@dataclass(frozen=True)
class PredictOptions:
    """What a caller may ask of one prediction (None: the manifest's value)."""

    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    image_size: tuple[int, int] | None = None
    """[height, width] of the caller's image before preprocessing: boxes come back in its
    pixels (``edge_agent.tasks.geometry``); unset, in the model input's pixels."""
    raw: bool = False
    """The model's raw output tensors instead of the task's answer."""

    @classmethod
    def parse(cls, values: dict[str, Any]) -> PredictOptions:
        """Options from keyword arguments or query parameters; InputError names a bad one."""
        unknown = sorted(set(values) - set(_CHECKS))
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(_CHECKS)}")
        return cls(**{k: _CHECKS[k](k, v) for k, v in values.items() if v is not None})

    def given(self) -> list[str]:
        """The names of the options set."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, False)]

    def check_task(self, kind: str) -> None:
        """InputError when an option does not apply to a model of task ``kind``."""
        if kind == "detection":
            return
        wrong = [name for name in self.given() if name in DETECTION_ONLY]
        if wrong:
            raise InputError(f"{wrong[0]} is for detection bundles; this bundle's task is "
                             f"{kind!r} (drop the option)")
