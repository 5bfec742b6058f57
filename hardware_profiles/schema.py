"""The one schema every hardware profile YAML file is validated against.

A profile says what a device is and what it can run; code reads capabilities
from here and never branches on a device's name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.contracts.vocab import FORMATS, PRECISIONS

Arch = Literal["aarch64", "x86_64", "armv7l"]
Precision = Literal[PRECISIONS]  # the shared vocabulary (edge_agent.contracts.vocab)
__all__ = ["FORMATS", "PRECISIONS", "OnnxTarget", "Profile", "Target", "TfliteTarget"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cpu(_Strict):
    model: str
    cores: int = Field(ge=1, le=256)
    freq_mhz: int | None = Field(default=None, ge=100)
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
    notes: str = ""

    def runtime_options(self) -> dict[str, Any]:
        """What the device's runtime needs to know, as plain JSON for the bundle manifest."""
        return {"providers": list(self.providers), "threads": self.threads, "opset": self.opset}


class TfliteTarget(_Strict):
    """A TFLite flatbuffer run by the LiteRT interpreter, optionally through a delegate."""

    format: Literal["tflite"]
    precision: Precision
    delegate: Literal["xnnpack", "gpu", "none"] = "xnnpack"
    threads: int = Field(ge=1, le=256)
    notes: str = ""

    def runtime_options(self) -> dict[str, Any]:
        """What the device's runtime needs to know, as plain JSON for the bundle manifest."""
        return {"delegate": self.delegate, "threads": self.threads}


Target = Annotated[OnnxTarget | TfliteTarget, Field(discriminator="format")]


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

    def formats(self) -> list[str]:
        """The model formats this device can run, best first, without repeats."""
        return list(dict.fromkeys(t.format for t in self.targets))

    def targets_for(self, fmt: str) -> list[OnnxTarget | TfliteTarget]:
        """The targets of one format, in the profile's order of preference."""
        return [t for t in self.targets if t.format == fmt]
