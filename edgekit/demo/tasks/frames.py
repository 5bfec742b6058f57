"""A detector's example frame for the report: one fresh shifted frame (never labelled),
sent to a shifted device while v1 serves and again once v2 does, drawn with its true
boxes and each version's detections (inline SVG over a PNG of the frame)."""

from __future__ import annotations

import base64
import html
import struct
import zlib
from typing import Any

import numpy as np

from edge_agent.tasks.detection import Detections, iou_matrix

CANDIDATES = 16      # fresh frames v1 is asked about; the one it misses most is shown
SCALE = 3            # screen pixels per frame pixel
COLOURS = {"truth": "#ffffff", "v1": "#d73027", "v2": "#1a9850"}


def found_digits(truth: list[list[float]], found: Detections, iou: float = 0.5) -> int:
    """How many true boxes a detection of the same class covers at IoU >= ``iou``."""
    rows = np.asarray(truth, np.float64).reshape(-1, 5)
    if not len(rows) or not len(found):
        return 0
    overlaps = iou_matrix(rows[:, 1:], found.boxes)
    same = rows[:, :1].astype(np.int64) == found.classes[None, :]
    return int(((overlaps >= iou) & same).any(axis=1).sum())


def pick_example(demo: Any, phase: str) -> None:
    """``before``: ask v1 on a shifted device about fresh shifted frames and keep the one it
    misses most; ``after``: ask the same device (now on v2) about that frame."""
    device = demo.s.shifted[0]
    port, task = demo.fleet.ports[device], demo.task
    xs, truths = demo.streams[device].pools.get("fresh", True)
    try:
        if phase == "before":
            asked = [(i, task.ask(port, xs[i:i + 1])) for i in range(min(CANDIDATES, len(xs)))]
            i, got = min(asked, key=lambda a: (found_digits(truths[a[0]], a[1].answer)
                                               - len(truths[a[0]])))
            demo.facts["example"] = {"device": device, "frame": xs[i], "truth": truths[i],
                                     "v1": got}
        elif "example" in demo.facts:
            example = demo.facts["example"]
            example["v2"] = task.ask(port, example["frame"][None])
    except (OSError, ValueError, KeyError):
        demo.facts.setdefault("example_error", f"{device} did not answer the example frame")


def png(gray: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a [H, W] image in [0, 1]."""
    pixels = (np.clip(gray, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _boxes(rows: list[tuple[list[float], str]], colour: str, dashed: bool) -> str:
    out = []
    for (x1, y1, x2, y2), text in rows:
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        out.append(f'<rect x="{x1 * SCALE:.1f}" y="{y1 * SCALE:.1f}" '
                   f'width="{(x2 - x1) * SCALE:.1f}" height="{(y2 - y1) * SCALE:.1f}" '
                   f'fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if text:
            out.append(f'<text x="{x1 * SCALE + 2:.1f}" y="{max(y1 * SCALE - 3, 10):.1f}" '
                       f'fill="{colour}" class="boxlabel">{html.escape(text)}</text>')
    return "".join(out)


def frame_svg(unit: np.ndarray, truth: list[list[float]], found: Detections, version: str,
              title: str) -> str:
    """The frame (as the device got it) with the true boxes (dashed) and one version's
    detections (class and score)."""
    h, w = unit.shape
    data = base64.b64encode(png(unit)).decode()
    truth_rows = [(row[1:], "") for row in truth]
    found_rows = [(list(map(float, b)), f"{int(c)} {float(s):.2f}")
                  for b, s, c in zip(found.boxes, found.scores, found.classes, strict=True)]
    return (f'<figure class="frame"><svg viewBox="0 0 {w * SCALE} {h * SCALE}" '
            f'width="{w * SCALE}" height="{h * SCALE}" role="img" '
            f'aria-label="{html.escape(title)}"><image width="{w * SCALE}" '
            f'height="{h * SCALE}" href="data:image/png;base64,{data}" '
            f'style="image-rendering:pixelated"/>'
            + _boxes(truth_rows, COLOURS["truth"], True)
            + _boxes(found_rows, COLOURS[version], False)
            + f"</svg><figcaption>{html.escape(title)}</figcaption></figure>")


def example_sections(demo: Any) -> list[str]:
    """The report's example frame: v1 and v2 side by side on the same shifted frame."""
    example = demo.facts.get("example")
    if not example:
        return []
    from examples.digit_boxes.data import MEAN, STD

    unit = np.asarray(example["frame"], np.float64)[0] * STD + MEAN
    truth, n = example["truth"], len(example["truth"])
    panels = []
    for version in ("v1", "v2"):
        got = example.get(version)
        if got is None:
            continue
        found = got.answer
        panels.append(frame_svg(unit, truth, found, version,
                                f"{version} (model v{got.version}): {found_digits(truth, found)} "
                                f"of {n} digits found, {len(found)} boxes"))
    return [f"<h2>Example frame: v1 and v2 on the same shifted frame</h2>"
            f"<p>A fresh frame from {html.escape(example['device'])}'s shifted stream "
            f"(never labelled, never trained on). Dashed white: the true boxes; "
            f"<span style='color:{COLOURS['v1']}'>red</span>: v1's detections, "
            f"<span style='color:{COLOURS['v2']}'>green</span>: v2's (class and score). "
            f"Counted found: same class, IoU &ge; 0.5.</p>",
            f"<div class='frames'>{''.join(panels)}</div>"]
