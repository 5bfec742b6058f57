"""Pictures for the build report: one validation image with the original model's detections
and the shipped file's drawn over it (base64 PNG)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.tasks.detection import Detections

COLOURS = {"original (torch)": "#1f78b4", "shipped file": "#e31a1c"}


def detection_picture(image: np.ndarray, original: Detections, shipped: Detections,
                      labels: Sequence[str] = ()) -> str:
    """``image`` ([C, H, W], the model's input) with both sets of boxes, as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import patches
    from matplotlib import pyplot as plt

    from export.report import png_base64

    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 3:  # [C, H, W]: gray from the first channel, RGB as it is
        pixels = np.moveaxis(pixels, 0, -1) if pixels.shape[0] == 3 else pixels[0]
    low, high = float(pixels.min()), float(pixels.max())
    pixels = (pixels - low) / (high - low or 1.0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, interpolation="nearest")
    for (name, colour), found, style in zip(COLOURS.items(), (original, shipped), ("-", "--"),
                                            strict=True):
        for box, score, cls in zip(found.boxes, found.scores, found.classes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           edgecolor=colour, linestyle=style, linewidth=1.5))
            text = labels[int(cls)] if 0 <= int(cls) < len(labels) else str(int(cls))
            ax.text(x1, y1 - 1 if style == "-" else y2 + 3, f"{text} {float(score):.2f}",
                    color=colour, fontsize=7)
        ax.plot([], [], color=colour, linestyle=style, label=f"{name}: {len(found)} boxes")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_axis_off()
    encoded = png_base64(fig)
    plt.close(fig)
    return encoded
