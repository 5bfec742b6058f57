"""The one schema every hardware profile YAML file is validated against.

A profile says what a device is and what it can run; code reads capabilities
from here and never branches on a device's name.
"""

# No ``from __future__ import annotations``: pydantic evaluates these annotations at run time,
# and the device runs Python 3.9, so unions are spelled Optional[...] / Union[...].
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.contracts.vocab import FORMATS, PRECISIONS

Arch = Literal["aarch64", "x86_64", "armv7l"]
# Whether latencies timed on the build host (its CPU, ONNX Runtime CPU / XNNPACK) stand for
# the device, when the build has no agent to time on (``edgekit build --measure-on``):
#   representative      the host's figures are the device's (the generic x86-64 profile);
#   rank_only           the device runs the same CPU runtimes, so the host's figures rank
#                       candidates fairly, but their values are not the device's;
#   not_representative  the device's fast path (TensorRT, CUDA, a GPU delegate) does not run
#                       on the host: host timings never rank candidates; among those within
#                       tolerance the build keeps the profile's target order.
HostTiming = Literal["representative", "rank_only", "not_representative"]
CPU_PROVIDERS = {"CPUExecutionProvider"}
CPU_DELEGATES = {"xnnpack", "none"}
Precision = Literal[PRECISIONS]  # the shared vocabulary (edge_agent.contracts.vocab)
__all__ = ["FORMATS", "PRECISIONS", "OnnxTarget", "Profile", "Target", "TfliteTarget"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cpu(_Strict):
    model: str
    cores: int = Field(ge=1, le=256)
    freq_mhz: Optional[int] = Field(default=None, ge=100)
    features: list[str] = Field(default_factory=list, description="e.g. neon, dotprod, fp16, avx2")


class Accelerator(_Strict):
    kind: Literal["gpu", "npu", "tpu", "dsp"]
    model: str
    notes: str = ""


class Software(_Strict):
    os_image: str
    os_python: str = Field(pattern=r"^3\.\d+$", description="python3 of the stock OS image")
    agent_python: str = Field(pattern=r"^3\.\d+$", description="python the agent runs with there")


class Limits(_Strict):
    max_model_mb: float = Field(gt=0)
    latency_budget_ms: float = Field(gt=0)


class OnnxTarget(_Strict):
    """An ONNX file run by ONNX Runtime with the listed execution providers, in order."""

    format: Literal["onnx"]
    precision: Precision
    opset: int = Field(default=17, ge=11, le=23)
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)
    threads: int = Field(ge=1, le=256)
    thread_choices: list[Annotated[int, Field(ge=1, le=256)]] = Field(
        default_factory=list, description="other thread counts the search may time; the "
        "fastest within tolerance wins and its count goes into the bundle")
    notes: str = ""

    def thread_options(self) -> list[int]:
        """Every thread count the search may try: ``threads`` first, then the choices."""
        return list(dict.fromkeys([self.threads, *self.thread_choices]))

    def cpu_only(self) -> bool:
        """True when the build host's CPU runtime runs this target as the device would."""
        return set(self.providers) <= CPU_PROVIDERS

    def accelerators_used(self) -> list[str]:
        """The providers beyond the CPU this target runs on (TensorRT, CUDA, ...)."""
        return [p for p in self.providers if p not in CPU_PROVIDERS]

    def runtime_options(self) -> dict[str, Any]:
        """What the device's runtime needs to know, as plain JSON for the bundle manifest."""
        return {"providers": list(self.providers), "threads": self.threads, "opset": self.opset}


class TfliteTarget(_Strict):
    """A TFLite flatbuffer run by the LiteRT interpreter, optionally through a delegate."""

    format: Literal["tflite"]
    precision: Precision
    delegate: Literal["xnnpack", "gpu", "none"] = "xnnpack"
    threads: int = Field(ge=1, le=256)
    thread_choices: list[Annotated[int, Field(ge=1, le=256)]] = Field(
        default_factory=list, description="other thread counts the search may time; the "
        "fastest within tolerance wins and its count goes into the bundle")
    notes: str = ""

    def thread_options(self) -> list[int]:
        """Every thread count the search may try: ``threads`` first, then the choices."""
        return list(dict.fromkeys([self.threads, *self.thread_choices]))

    def cpu_only(self) -> bool:
        """True when the build host's CPU runtime runs this target as the device would."""
        return self.delegate in CPU_DELEGATES

    def accelerators_used(self) -> list[str]:
        """The delegate beyond the CPU this target runs on, if any."""
        return [] if self.cpu_only() else [f"{self.delegate} delegate"]

    def runtime_options(self) -> dict[str, Any]:
        """What the device's runtime needs to know, as plain JSON for the bundle manifest."""
        return {"delegate": self.delegate, "threads": self.threads}


Target = Annotated[Union[OnnxTarget, TfliteTarget], Field(discriminator="format")]


class Profile(_Strict):
    """One device: what it is, and the ordered targets it runs best-first."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    arch: Arch
    cpu: Cpu
    memory_mb: int = Field(ge=64)
    accelerators: list[Accelerator] = Field(default_factory=list)
    software: Software
    targets: list[Target] = Field(min_length=1)
    limits: Limits
    host_timing: HostTiming = "rank_only"

    @model_validator(mode="after")
    def _host_timing_fits_targets(self) -> "Profile":
        if self.host_timing != "not_representative" and not all(
                t.cpu_only() for t in self.targets):
            raise ValueError("host_timing must be not_representative: a target uses a GPU "
                             "provider or delegate the build host's CPU timings cannot stand for")
        return self

    def formats(self) -> list[str]:
        """The model formats this device can run, best first, without repeats."""
        return list(dict.fromkeys(t.format for t in self.targets))

    def targets_for(self, fmt: str) -> list[Union[OnnxTarget, TfliteTarget]]:
        """The targets of one format, in the profile's order of preference."""
        return [t for t in self.targets if t.format == fmt]
