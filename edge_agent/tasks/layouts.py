"""Detection output layouts: each is data (its outputs) plus one decode function.

A decode function takes the model's raw outputs (float, batch first) and the detection
spec, and returns ``(boxes, scores)``: boxes ``[B, N, 4]`` as x1 y1 x2 y2 in input pixels
and class scores ``[B, N, C]``. Adding a layout is one ``@register`` function here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from edge_agent.contracts.task import DetectionSpec
from edge_agent.errors import BundleError

Decoded = tuple[np.ndarray, np.ndarray]
Decode = Callable[[list[np.ndarray], DetectionSpec], Decoded]


class Candidates(NamedTuple):
    """One image's boxes whose best class score passes the threshold: boxes ``[K, 4]``
    (x1 y1 x2 y2, input pixels), that best score ``[K]`` and its class ``[K]``."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    finite: bool = True
    """False when a box's best score or a kept box is NaN or inf."""


Select = Callable[[list[np.ndarray], DetectionSpec, float], "list[Candidates]"]


@dataclass(frozen=True)
class Layout:
    """One layout: its name, how many outputs it reads, what they look like, how to decode."""

    name: str
    outputs: int
    shapes: str
    decode: Decode
    classes: Callable[[list[list[int]]], int]
    """The number of classes the output shapes imply."""


LAYOUTS: dict[str, Layout] = {}
FAST_SELECT: dict[str, Select] = {}
"""Layouts whose candidates are found without decoding every box (``select``)."""


def register(name: str, outputs: int, shapes: str,
             classes: Callable[[list[list[int]]], int]) -> Callable[[Decode], Decode]:
    """Register a decode function under a layout name, with how its output shapes imply
    the number of classes."""
    def add(decode: Decode) -> Decode:
        LAYOUTS[name] = Layout(name, outputs, shapes, decode, classes)
        return decode
    return add


def layout_for(name: str) -> Layout:
    """The registered layout, or a one-line error listing the known ones."""
    if name not in LAYOUTS:
        raise BundleError(f"unknown detection layout {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def select(name: str) -> Callable[[Select], Select]:
    """Register a fast candidate selection for layout ``name`` (same result as decoding
    every box, then keeping those whose best score passes)."""
    def add(fn: Select) -> Select:
        FAST_SELECT[name] = fn
        return fn
    return add


def candidates(outputs: list[np.ndarray], spec: DetectionSpec,
               threshold: float) -> list[Candidates]:
    """Each image's boxes whose best class score is >= ``threshold``, with that score and
    class (the first class on ties), in the layout's box order."""
    fast = FAST_SELECT.get(spec.layout)
    if fast is not None:
        return fast(outputs, spec, threshold)
    boxes, scores = layout_for(spec.layout).decode(outputs, spec)
    found = []
    for image_boxes, image_scores in zip(boxes, scores):
        if not image_scores.size:
            found.append(_none())
            continue
        classes = np.argmax(image_scores, axis=1)
        best = np.take_along_axis(image_scores, classes[:, None], axis=1)[:, 0]
        keep = np.flatnonzero(best >= threshold)
        boxes_kept = image_boxes[keep]
        found.append(Candidates(boxes_kept, best[keep], classes[keep],
                                bool(np.isfinite(best).all() and np.isfinite(boxes_kept).all())))
    return found


def _none() -> Candidates:
    return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                      np.zeros(0, np.int64))


def _scale(spec: DetectionSpec) -> np.ndarray:
    """Multiplier of (x, y, x, y) coordinates into input pixels."""
    if not spec.normalized_boxes:
        return np.ones(4, dtype=np.float32)
    height, width = spec.input_size
    return np.array([width, height, width, height], dtype=np.float32)


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[..., 2:4] / 2
    return np.concatenate([xywh[..., :2] - half, xywh[..., :2] + half], axis=-1)


def _check(outputs: list[np.ndarray], layout: str, rank: int, expected: str) -> None:
    if any(o.ndim != rank for o in outputs):
        shapes = ", ".join(str(list(o.shape)) for o in outputs)
        raise BundleError(f"layout {layout!r} expects {expected}, the model gives {shapes}")


def _single(outputs: list[np.ndarray], spec: DetectionSpec, layout: str, axis: int,
            fixed: int, shape: str) -> np.ndarray:
    """The one output of a single-output layout, checked: rank 3, ``fixed + C`` on ``axis``
    (``shape`` is the expected shape with ``{}`` where that size goes)."""
    out = np.asarray(outputs[0], dtype=np.float32)
    _check([out], layout, 3, shape.format(f"{fixed} + classes"))
    if out.shape[axis] != fixed + spec.num_classes:
        raise BundleError(f"layout {layout!r} with {spec.num_classes} classes expects "
                          f"{shape.format(fixed + spec.num_classes)}, the model gives "
                          f"{list(out.shape)}")
    return out


@register("yolov8", 1, "[1, 4 + C, N]: cx cy w h, then C class scores",
          classes=lambda shapes: shapes[0][1] - 4)
def decode_yolov8(outputs: list[np.ndarray], spec: DetectionSpec) -> Decoded:
    out = _single(outputs, spec, "yolov8", 1, 4, "[batch, {}, boxes]")
    rows = np.transpose(out, (0, 2, 1))
    return _xywh_to_xyxy(rows[..., :4] * _scale(spec)), rows[..., 4:]


@select("yolov8")
def select_yolov8(outputs: list[np.ndarray], spec: DetectionSpec,
                  threshold: float) -> list[Candidates]:
    """yolov8 without the transpose: the best score of each box is a reduction over the
    class rows (contiguous), and only passing boxes are decoded."""
    out = _single(outputs, spec, "yolov8", 1, 4, "[batch, {}, boxes]")
    scale = _scale(spec)
    found = []
    for image in out:
        scores = image[4:]
        best = scores.max(axis=0) if scores.shape[1] else np.zeros(0, np.float32)
        keep = np.flatnonzero(best >= threshold)
        classes = scores[:, keep].argmax(axis=0) if keep.size else np.zeros(0, np.int64)
        boxes = _xywh_to_xyxy(image[:4, keep].T * scale)
        found.append(Candidates(boxes, best[keep], classes.astype(np.int64),
                                bool(np.isfinite(best).all() and np.isfinite(boxes).all())))
    return found


@register("yolov5", 1, "[1, N, 5 + C]: cx cy w h objectness, then C class scores",
          classes=lambda shapes: shapes[0][2] - 5)
def decode_yolov5(outputs: list[np.ndarray], spec: DetectionSpec) -> Decoded:
    out = _single(outputs, spec, "yolov5", 2, 5, "[batch, boxes, {}]")
    return _xywh_to_xyxy(out[..., :4] * _scale(spec)), out[..., 5:] * out[..., 4:5]


@register("boxes_scores", 2, "boxes [1, N, 4] x1 y1 x2 y2 and scores [1, N, C]",
          classes=lambda shapes: shapes[1][-1] if shapes[0][-1] == 4 else shapes[0][-1])
def decode_boxes_scores(outputs: list[np.ndarray], spec: DetectionSpec) -> Decoded:
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs]
    _check(arrays, "boxes_scores", 3, "boxes [batch, boxes, 4] and scores [batch, boxes, classes]")
    boxes, scores = arrays
    if boxes.shape[-1] != 4 and scores.shape[-1] == 4:  # outputs listed the other way round
        boxes, scores = scores, boxes
    if boxes.shape[-1] != 4 or scores.shape[-1] != spec.num_classes \
            or boxes.shape[:2] != scores.shape[:2]:
        raise BundleError(f"layout 'boxes_scores' with {spec.num_classes} classes expects "
                          f"[batch, N, 4] and [batch, N, {spec.num_classes}], the model gives "
                          f"{list(boxes.shape)} and {list(scores.shape)}")
    return boxes * _scale(spec), scores


def check_output_shapes(spec: DetectionSpec, shapes: list[list[object]]) -> None:
    """One-line error when the model's output shapes cannot be read with ``spec.layout``
    (dynamic dimensions, ``None``, are taken as fitting)."""
    layout = layout_for(spec.layout)
    if len(shapes) != layout.outputs:
        raise BundleError(f"layout {spec.layout!r} reads {layout.outputs} output(s) "
                          f"({layout.shapes}); the model has {len(shapes)}")
    dummy = [np.zeros([1 if d is None else int(d) for d in shape], dtype=np.float32)
             for shape in shapes]
    layout.decode(dummy, spec)


def classes_in(layout: str, shapes: list[list[object]]) -> int:
    """How many classes a model's output shapes hold in ``layout`` (one-line error when the
    shapes do not fit it)."""
    found = layout_for(layout)
    if len(shapes) != found.outputs or any(len(s) != 3 or None in s[1:] for s in shapes):
        raise BundleError(f"layout {layout!r} reads {found.outputs} output(s) ({found.shapes}); "
                          f"the model gives {', '.join(str(list(s)) for s in shapes)}")
    count = found.classes([[int(d) if d is not None else 1 for d in s] for s in shapes])
    if count < 1:
        raise BundleError(f"layout {layout!r} ({found.shapes}) leaves no class scores in the "
                          f"model's outputs {', '.join(str(list(s)) for s in shapes)}")
    return count
