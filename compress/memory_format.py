"""The memory format distillation trains in: channels-last where it is faster for this
model on this host, measured, not assumed.

On x86 and Arm CPUs oneDNN/XNNPACK convolutions run much faster on NHWC tensors
(MobileNetV2 at 224x224 trains about 1.8x faster here), while small nets or models
whose code ``view``s a non-contiguous tensor do not gain or do not run at all. So the
build times a few forward/backward passes of a copy of the student (and the teacher's
forward) in both formats on one real batch and keeps the faster one; any error in
channels-last keeps the default format.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from compress.outputs import as_list

CONTIGUOUS, CHANNELS_LAST = "contiguous", "channels_last"
FORMATS = {CONTIGUOUS: torch.contiguous_format, CHANNELS_LAST: torch.channels_last}
PROBE_STEPS = 2


@dataclass(frozen=True)
class FormatChoice:
    """The format chosen, the seconds per probed step in each format, and why."""

    name: str
    seconds: dict[str, float]
    reason: str

    @property
    def memory_format(self) -> torch.memory_format:
        """The torch memory format to train in."""
        return FORMATS[self.name]

    def summary(self) -> dict[str, object]:
        """Plain JSON for the report."""
        return {"memory_format": self.name, "reason": self.reason,
                "step_seconds": {k: round(v, 4) for k, v in self.seconds.items()}}


def has_conv2d(model: torch.nn.Module) -> bool:
    """Whether the model has a 2-D convolution (the only layers NHWC speeds up)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def as_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """A 4-D tensor in ``memory_format``; other tensors unchanged."""
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x


def _step_seconds(student: torch.nn.Module, teacher: torch.nn.Module, inputs: torch.Tensor,
                  memory_format: torch.memory_format) -> float:
    """Seconds of one teacher forward + student forward/backward (the best of a few)."""
    student.to(memory_format=memory_format)
    teacher.to(memory_format=memory_format)
    x = as_format(inputs, memory_format)
    best = float("inf")
    for _ in range(PROBE_STEPS + 1):  # the first pass warms up the kernels
        start = time.perf_counter()
        with torch.no_grad():
            teacher(x)
        sum(o.float().sum() for o in as_list(student(x))).backward()
        student.zero_grad(set_to_none=True)
        best = min(best, time.perf_counter() - start)
    return best


def choose_format(student: torch.nn.Module, teacher: torch.nn.Module,
                  inputs: torch.Tensor) -> FormatChoice:
    """Time both formats on copies of the models (the originals are not touched) with one
    training batch ``inputs``; keep channels-last only when it is faster and runs."""
    if inputs.dim() != 4 or not has_conv2d(student):
        return FormatChoice(CONTIGUOUS, {}, "no 4-D input with 2-D convolutions")
    probe_student, probe_teacher = copy.deepcopy(student).train(), copy.deepcopy(teacher).eval()
    seconds = {CONTIGUOUS: _step_seconds(probe_student, probe_teacher, inputs.float(),
                                         torch.contiguous_format)}
    try:
        seconds[CHANNELS_LAST] = _step_seconds(probe_student, probe_teacher, inputs.float(),
                                               torch.channels_last)
    except RuntimeError as exc:  # e.g. the model's code views a non-contiguous tensor
        return FormatChoice(CONTIGUOUS, seconds, f"channels-last does not run: "
                            f"{str(exc).splitlines()[0][:120]}")
    if seconds[CHANNELS_LAST] < seconds[CONTIGUOUS]:
        return FormatChoice(CHANNELS_LAST, seconds, "faster per training step")
    return FormatChoice(CONTIGUOUS, seconds, "channels-last is not faster here")
