"""Boxes back in the caller's pixels: the inverse of the bundle's geometric preprocessing.

A caller that resized or letterboxed its image into the model's input says how large the
image was (``image_size``, [height, width]); the agent walks the manifest's
``preprocessing.steps`` forward from that size and undoes each geometric step on the
boxes, last step first. Geometric ops are registered here, each with the size it makes
and its inverse for boxes (and, for callers that want the agent's own preprocessing, the
forward op on an image):

- ``resize``: ``{"op": "resize", "size": [h, w]}`` stretches the image to h x w;
- ``letterbox``: ``{"op": "letterbox", "size": [h, w], "value": 0.5}`` scales it by one
  factor to fit h x w, keeping its aspect ratio, and pads the rest evenly on both sides.

Every other op (``scale``, ``normalize``, ``repeat_channels``, ...) leaves geometry alone.
When the steps end at a size other than the model's input (no geometric step recorded),
the image is taken as resized to the model's input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edge_agent.errors import BundleError

Size = tuple[int, int]


@dataclass(frozen=True)
class Resize:
    """Stretch to ``size`` (height, width)."""

    size: Size

    def output_size(self, size: Size) -> Size:
        """The image size after this step."""
        return self.size

    def boxes_back(self, boxes: np.ndarray, size: Size) -> np.ndarray:
        """Boxes after this step -> boxes in the pixels of an image of ``size`` before it."""
        sy, sx = size[0] / self.size[0], size[1] / self.size[1]
        return boxes * np.array([sx, sy, sx, sy], dtype=np.float32)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The step on an image ``[..., H, W]`` (nearest neighbour)."""
        return _nearest(image, self.size)


@dataclass(frozen=True)
class Letterbox:
    """Scale to fit ``size`` keeping the aspect ratio; pad evenly with ``value``."""

    size: Size
    value: float = 0.0

    def _fit(self, size: Size) -> tuple[float, Size, Size]:
        """(scale, scaled size, top-left padding) for an image of ``size``."""
        ratio = min(self.size[0] / size[0], self.size[1] / size[1])
        scaled = (max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio)))
        pad = ((self.size[0] - scaled[0]) // 2, (self.size[1] - scaled[1]) // 2)
        return ratio, scaled, pad

    def output_size(self, size: Size) -> Size:
        """The image size after this step."""
        return self.size

    def boxes_back(self, boxes: np.ndarray, size: Size) -> np.ndarray:
        """Boxes after this step -> boxes in the pixels of an image of ``size`` before it
        (clipped to that image: the padding holds nothing)."""
        ratio, _, (top, left) = self._fit(size)
        back = (boxes - np.array([left, top, left, top], dtype=np.float32)) / ratio
        high = np.array([size[1], size[0], size[1], size[0]], dtype=np.float32)
        return np.clip(back, 0, high).astype(np.float32)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The step on an image ``[..., H, W]`` (nearest neighbour, then padding)."""
        _, scaled, (top, left) = self._fit(image.shape[-2:])
        out = np.full((*image.shape[:-2], *self.size), self.value, dtype=image.dtype)
        out[..., top:top + scaled[0], left:left + scaled[1]] = _nearest(image, scaled)
        return out


Op = Any  # Resize | Letterbox (Python 3.9: no X | Y at run time)
GEOMETRY_OPS: dict[str, Callable[[dict[str, Any]], Op]] = {
    "resize": lambda step: Resize(_size_of(step)),
    "letterbox": lambda step: Letterbox(_size_of(step), float(step.get("value", 0.0))),
}


def _size_of(step: dict[str, Any]) -> Size:
    size = step.get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in size):
        raise BundleError(f"preprocessing step {step.get('op')!r} needs 'size': [height, width] "
                          f"in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def geometric_steps(steps: Sequence[dict[str, Any]]) -> list[Op]:
    """The geometric ops among a manifest's preprocessing steps, in order."""
    return [GEOMETRY_OPS[s["op"]](s) for s in steps if s.get("op") in GEOMETRY_OPS]


def to_caller_pixels(boxes: np.ndarray, ops: Sequence[Op], model_size: Sequence[int],
                     image_size: Sequence[int]) -> np.ndarray:
    """Boxes in the model input's pixels -> boxes in the pixels of the caller's image of
    ``image_size`` [height, width], undoing ``ops`` (see the module docstring)."""
    sizes = [(int(image_size[0]), int(image_size[1]))]
    for op in ops:
        sizes.append(op.output_size(sizes[-1]))
    model = (int(model_size[0]), int(model_size[1]))
    out = np.asarray(boxes, dtype=np.float32)
    if sizes[-1] != model:  # the caller brought its image to the model's size itself
        out = Resize(model).boxes_back(out, sizes[-1])
    for op, before in zip(reversed(ops), reversed(sizes[:-1])):
        out = op.boxes_back(out, before)
    return out


def _nearest(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``image [..., H, W]`` resampled to ``size`` by nearest neighbour."""
    height, width = image.shape[-2:]
    rows = np.minimum((np.arange(size[0]) + 0.5) * height / size[0], height - 1).astype(np.intp)
    cols = np.minimum((np.arange(size[1]) + 0.5) * width / size[1], width - 1).astype(np.intp)
    return image[..., rows[:, None], cols[None, :]]
