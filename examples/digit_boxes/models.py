"""A small anchor-free, YOLOv8-style digit detector, and its training loss.

Input ``float32[B, 1, 96, 96]`` (see ``data.py``); output one tensor ``[B, 4 + 10, 180]``
in the ``yolov8`` layout: for each of the 12x12 (stride 8) and 6x6 (stride 16) grid
points, the box centre x, centre y, width and height as fractions of the input size
(0..1), then 10 sigmoid class scores (0..1). Boxes and scores share one numeric range,
which int8 quantization of the single output needs.

Backbone: conv-BN-SiLU blocks, stride 2 per stage, residual blocks in between; neck: the
stride-16 map upsampled (nearest) and concatenated with the stride-8 map; head: decoupled
per level, a box branch predicting the distances (left, top, right, bottom) from the grid
point as ``sigmoid * 6 * stride`` (the box then clipped to the image) and a class branch
predicting logits. The grid points are buffers computed from the fixed input size, so the
model exports as plain conv, BN, SiLU, concat, resize, reshape, sigmoid, clip, add and mul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 96
NUM_CLASSES = 10
STRIDES = (8, 16)
MAX_DISTANCE = 6.0          # a box side reaches at most this many strides from its point
CENTRE_RADIUS = 2.5         # positives lie within this many strides of the box centre
LOSS_WEIGHTS = {"class": 1.0, "giou": 2.0, "l1": 5.0}


def anchor_points(size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid-point centres ``[N, 2]`` (x, y in pixels) and their strides ``[N]``, stride 8
    first, row-major: the order of the output's last axis."""
    points, strides = [], []
    for stride in STRIDES:
        n = size // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        points.append((torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * stride)
        strides.append(torch.full((n * n,), float(stride)))
    return torch.cat(points), torch.cat(strides)


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.SiLU(inplace=True))


class Residual(nn.Module):
    """Two 3x3 conv blocks with a skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    """A stride-2 conv block then ``depth`` residual blocks."""
    return nn.Sequential(conv(cin, cout, stride=2), *(Residual(cout) for _ in range(depth)))


class Head(nn.Module):
    """Decoupled head of one level: box distances [B, 4, HW] (pixels) and logits [B, C, HW]."""

    def __init__(self, cin: int, hidden: int, stride: int, num_classes: int) -> None:
        super().__init__()
        self.box = nn.Sequential(conv(cin, hidden), conv(hidden, hidden), nn.Conv2d(hidden, 4, 1))
        self.cls = nn.Sequential(conv(cin, hidden), conv(hidden, hidden),
                                 nn.Conv2d(hidden, num_classes, 1))
        self.scale = MAX_DISTANCE * stride
        nn.init.constant_(self.box[-1].bias, -math.log(MAX_DISTANCE - 1))  # starts at 1 stride
        nn.init.constant_(self.cls[-1].bias, -math.log(99))                 # scores start at 0.01

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        distances = torch.sigmoid(self.box(x)) * self.scale
        return distances.flatten(2), self.cls(x).flatten(2)


def sincos_positions(side: int, channels: int, temperature: float = 10000.0) -> torch.Tensor:
    """RT-DETR's fixed 2-D sine-cosine position embedding ``[1, side * side, channels]``."""
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                            torch.arange(side, dtype=torch.float32), indexing="ij")
    quarter = channels // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    x, y = xs.flatten()[:, None] * omega, ys.flatten()[:, None] * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], 1)[None]


class Encoder(nn.Module):
    """RT-DETR's AIFI: transformer encoder layers over the tokens of one feature map (the
    stride-16 map's 36 here), with a fixed position embedding; the map keeps its shape."""

    def __init__(self, channels: int, side: int, layers: int, heads: int, ffn: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(channels, heads, ffn, dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.register_buffer("positions", sincos_positions(side, channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.encoder(x.flatten(2).transpose(1, 2) + self.positions)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class DigitDetector(nn.Module):
    """The detector; ``width`` scales the channels, ``depth`` the residual blocks per stage;
    ``attention`` encoder layers (``Encoder``) run over the stride-16 map when above 0."""

    def __init__(self, width: float = 1.0, depth: int = 1,
                 num_classes: int = NUM_CLASSES, attention: int = 0) -> None:
        super().__init__()
        c1, c2, c3, c4 = (max(8, int(c * width)) for c in (16, 32, 48, 64))
        self.stem = conv(1, c1, stride=2)                           # 48x48
        self.stage2 = stage(c1, c2, depth)                          # 24x24, stride 4
        self.stage3 = stage(c2, c3, depth)                          # 12x12, stride 8
        self.stage4 = stage(c3, c4, depth)                          # 6x6, stride 16
        side = IMAGE_SIZE // STRIDES[1]
        self.encoder = Encoder(c4, side, attention, heads=4, ffn=2 * c4) if attention \
            else nn.Identity()
        self.fuse = conv(c3 + c4, c3)                               # neck at stride 8
        self.heads = nn.ModuleList([Head(c3, c3, STRIDES[0], num_classes),
                                    Head(c4, c3, STRIDES[1], num_classes)])
        points, _ = anchor_points()
        self.register_buffer("points", points.T[None] / IMAGE_SIZE, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.encoder(self.stage4(p3))
        p3 = self.fuse(torch.cat([p3, F.interpolate(p4, scale_factor=2.0, mode="nearest")], 1))
        levels = [head(p) for head, p in zip(self.heads, (p3, p4), strict=True)]
        ltrb = torch.cat([d for d, _ in levels], 2) / IMAGE_SIZE          # [B, 4, N], 0..1
        scores = torch.sigmoid(torch.cat([c for _, c in levels], 2))    # [B, C, N]
        top_left = torch.clamp(self.points - ltrb[:, 0:2], 0.0, 1.0)    # inside the image
        bottom_right = torch.clamp(self.points + ltrb[:, 2:4], 0.0, 1.0)
        centre, size = (top_left + bottom_right) * 0.5, bottom_right - top_left
        return torch.cat([centre, size, scores], 1)


def digit_detector() -> nn.Module:
    """Factory for ``edgekit build --model examples/digit_boxes/models.py:digit_detector``.

    0.41 M parameters; about 0.5 ms per image in fp32 ONNX Runtime at one thread (x86-64).
    """
    return DigitDetector(width=1.0, depth=1)


def digit_detector_large() -> nn.Module:
    """The same detector, wider and deeper, for latency benchmarks: 4.9 M parameters, about
    6.5 ms per image in fp32 ONNX Runtime at one thread (x86-64)."""
    return DigitDetector(width=3.0, depth=2)


def digit_detector_hybrid() -> nn.Module:
    """The large detector with two transformer encoder layers (4 heads) over its stride-16
    map, as RT-DETR's hybrid encoder does: an attention detector for the benchmarks."""
    return DigitDetector(width=3.0, depth=2, attention=2)


def to_xyxy(outputs: torch.Tensor) -> torch.Tensor:
    """Model outputs [B, 4 + C, N] -> boxes [B, N, 4] as x1, y1, x2, y2 in input pixels."""
    cxcy, wh = outputs[:, 0:2].transpose(1, 2), outputs[:, 2:4].transpose(1, 2)
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1) * IMAGE_SIZE


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of matching xyxy boxes ``a`` and ``b`` [..., 4]."""
    inter = (torch.min(a[..., 2:], b[..., 2:]) - torch.max(a[..., :2], b[..., :2])).clamp(min=0)
    inter = inter[..., 0] * inter[..., 1]
    area = lambda t: (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter + 1e-7
    hull = area(torch.cat([torch.min(a[..., :2], b[..., :2]),
                           torch.max(a[..., 2:], b[..., 2:])], -1)) + 1e-7
    iou = inter / union
    return iou, iou - (hull - union) / hull


def assign(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which ground-truth row of ``labels`` [B, M, 5] each grid point learns: ``[B, N]``
    indices and a ``[B, N]`` positive mask.

    A point is positive for a box when it lies inside the box and within CENTRE_RADIUS
    strides of its centre; a point claimed by several boxes takes the smallest. A box
    that gets no point (a thin "1") takes the point nearest its centre.
    """
    points, strides = (t.to(labels.device) for t in anchor_points())
    valid = labels[..., 0] >= 0                                              # [B, M]
    box = labels[..., 1:, None]                                              # [B, M, 4, 1]
    px, py = points[:, 0], points[:, 1]
    centre_x, centre_y = (box[:, :, 0] + box[:, :, 2]) / 2, (box[:, :, 1] + box[:, :, 3]) / 2
    inside = (px > box[:, :, 0]) & (px < box[:, :, 2]) & (py > box[:, :, 1]) & (py < box[:, :, 3])
    near = ((px - centre_x).abs() < CENTRE_RADIUS * strides) & \
           ((py - centre_y).abs() < CENTRE_RADIUS * strides)
    candidate = inside & near & valid[..., None]                             # [B, M, N]
    nearest = ((px - centre_x) ** 2 + (py - centre_y) ** 2).argmin(-1)      # [B, M]
    lonely = valid & ~candidate.any(-1)
    candidate |= F.one_hot(nearest, len(strides)).bool() & lonely[..., None]
    area = (labels[..., 3] - labels[..., 1]) * (labels[..., 4] - labels[..., 2])
    cost = torch.where(candidate, area[..., None], torch.full_like(area[..., None], math.inf))
    return cost.argmin(1), candidate.any(1)


def train_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Detection loss of outputs [B, 4 + C, N] against padded labels [B, M, 5].

    BCE on the class scores (target 1 for a positive point's class, 0 elsewhere), and
    GIoU plus L1 (on boxes normalised by the input size) for the positive points' boxes.
    """
    index, positive = assign(labels)
    matched = torch.gather(labels, 1, index[..., None].expand(-1, -1, 5))    # [B, N, 5]
    scores = outputs[:, 4:].transpose(1, 2)                                  # [B, N, C]
    target = torch.zeros_like(scores)
    target[positive] = F.one_hot(matched[positive][:, 0].long(), scores.shape[-1]).float()
    count = positive.sum().clamp(min=1)
    class_loss = F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6), target,
                                        reduction="sum") / count
    predicted, wanted = to_xyxy(outputs)[positive], matched[positive][:, 1:]
    giou_loss = (1 - giou(predicted, wanted)[1]).sum() / count
    l1_loss = (predicted - wanted).abs().sum() / IMAGE_SIZE / count
    return (LOSS_WEIGHTS["class"] * class_loss + LOSS_WEIGHTS["giou"] * giou_loss
            + LOSS_WEIGHTS["l1"] * l1_loss)
