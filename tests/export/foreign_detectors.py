"""Detectors as other tools export them, made here by small torch modules (nothing is
downloaded): Ultralytics' YOLOv8 ONNX layout ``[1, 4 + C, N]`` (centre x/y, width, height
in input pixels, then sigmoid class scores), YOLOv5's ``[1, N, 5 + C]`` with objectness, and
separate boxes ``[1, N, 4]`` + scores ``[1, N, C]``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SIZE, GRID, CLASSES = 64, 8, 3
STRIDE = SIZE // GRID


class ForeignDetector(nn.Module):
    """Conv features on an 8x8 grid; boxes decoded in the graph, as exporters do."""

    def __init__(self, layout: str = "yolov8", classes: int = CLASSES) -> None:
        super().__init__()
        self.layout = layout
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.SiLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.SiLU(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.SiLU())
        self.box = nn.Conv2d(16, 4, 1)
        self.cls = nn.Conv2d(16, classes, 1)
        self.obj = nn.Conv2d(16, 1, 1)
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        self.register_buffer("centres", (torch.stack([xs, ys]).reshape(1, 2, -1).float() + 0.5)
                             * STRIDE)

    def forward(self, x: torch.Tensor):
        f = self.body(x)
        raw = self.box(f).flatten(2)
        xy = self.centres + torch.tanh(raw[:, :2]) * STRIDE
        wh = torch.sigmoid(raw[:, 2:]) * SIZE / 2
        scores = torch.sigmoid(self.cls(f).flatten(2))
        if self.layout == "yolov8":
            return torch.cat([xy, wh, scores], 1)
        if self.layout == "yolov5":
            obj = torch.sigmoid(self.obj(f).flatten(2))
            return torch.cat([xy, wh, obj, scores], 1).transpose(1, 2)
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).transpose(1, 2)
        return boxes, scores.transpose(1, 2)


def export_foreign(layout: str, path: Path, seed: int = 0) -> Path:
    """Write a ForeignDetector of ``layout`` as ONNX (batch 1, 3x64x64), as another tool would."""
    torch.manual_seed(seed)
    model = ForeignDetector(layout).eval()
    with torch.no_grad():  # bias the class head so some boxes pass a 0.25 threshold
        model.cls.bias.fill_(0.0)
    names = ["boxes", "scores"] if layout == "boxes_scores" else ["output0"]
    torch.onnx.export(model, (torch.rand(1, 3, SIZE, SIZE),), str(path), dynamo=False,
                      opset_version=17, input_names=["images"], output_names=names)
    return path
