"""Samples as a COCO detection dataset that annotation tools import, with the device's
detections as pre-annotations (so a person corrects boxes instead of drawing them).

Layout (CVAT's "COCO 1.0" import; Label Studio through its COCO converter)::

    <out>/annotations/instances_default.json
    <out>/images/<device>-<incarnation>-<seq>.png

Images are the samples' model inputs as 8-bit PNG (batch dimension dropped; channels
first or last, 1 or 3 channels; float inputs in [0, 1] scaled by 255, other float
ranges stretched to 0-255 per image, so boxes, in input pixels, stay aligned). Each
detection becomes an annotation with ``bbox`` ``[x, y, width, height]`` clipped to the
image, its ``category_id`` (class index + 1: COCO ids start at 1) and the device's
``score``. Categories are named from the model version's manifest labels where the
version was published, else ``class_<index>``. PNGs are written with zlib (stdlib): the
cloud needs no imaging library.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cloud_sync.errors import CloudError

ANNOTATIONS = Path("annotations") / "instances_default.json"


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale ``[H, W]`` or RGB ``[H, W, 3]`` array as a PNG file."""
    height, width = image.shape[:2]
    colour = 2 if image.ndim == 3 else 0
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def as_image(array: np.ndarray) -> np.ndarray:
    """A model input as an 8-bit ``[H, W]`` or ``[H, W, 3]`` image (see module doc)."""
    a = np.asarray(array)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3) or min(a.shape[:2]) < 2:
        raise CloudError(f"samples export: an input of shape {list(array.shape)} is not an "
                         "image (need [H, W], [H, W, 3] or [3, H, W], batch of 1); use "
                         "--format npz")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = np.nan_to_num(a.astype(np.float64))
    low, high = float(a.min()), float(a.max())
    if not (low >= 0.0 and high <= 1.0):
        a = (a - low) / (high - low) if high > low else np.zeros_like(a)
    return np.ascontiguousarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8))


def _annotations(detections: list[dict[str, Any]], image_id: int, width: int, height: int,
                 first_id: int) -> list[dict[str, Any]]:
    out = []
    for i, d in enumerate(detections):
        x1, y1, x2, y2 = (float(v) for v in d["box"])
        x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
        y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
        w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
        out.append({"id": first_id + i, "image_id": image_id, "category_id": int(d["class"]) + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2), "iscrowd": 0, "score": float(d["score"]),
                    "segmentation": []})
    return out


def categories(labels: list[str], classes_seen: set[int]) -> list[dict[str, Any]]:
    """COCO categories: every label of the manifest, plus any class index seen beyond."""
    count = max([len(labels), *(c + 1 for c in classes_seen)])
    return [{"id": i + 1, "name": labels[i] if i < len(labels) else f"class_{i}",
             "supercategory": ""} for i in range(count)]


def write_coco(out: Path, items: list[dict[str, Any]], labels: list[str],
               info: dict[str, Any]) -> dict[str, int]:
    """Write ``items`` (``name``, ``input`` array, ``detections`` list or None, ``device``,
    ``time``, ``reason``) as images + one COCO JSON under ``out``; returns the counts."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / ANNOTATIONS.parent).mkdir(parents=True, exist_ok=True)
    images, annotations, seen = [], [], set()
    for image_id, item in enumerate(items, start=1):
        pixels = as_image(item["input"])
        name = f"{item['name']}.png"
        (out / "images" / name).write_bytes(png_bytes(pixels))
        height, width = pixels.shape[:2]
        images.append({"id": image_id, "file_name": name, "width": width, "height": height,
                       "edgekit": {"device": item["device"], "time": item["time"],
                                   "reason": item["reason"]}})
        found = item["detections"] or []
        seen |= {int(d["class"]) for d in found}
        annotations += _annotations(found, image_id, width, height, len(annotations) + 1)
    doc = {"info": info, "licenses": [], "images": images, "annotations": annotations,
           "categories": categories(labels, seen)}
    tmp = out / (str(ANNOTATIONS) + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out / ANNOTATIONS)
    return {"images": len(images), "annotations": len(annotations)}
