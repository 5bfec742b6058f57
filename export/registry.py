"""Exporters (by format) and quantizers (by format, precision and method name).

A format module (``onnx.py``, ``tflite.py``) registers its exporter and the quantizers
that produce its files; ``inc.py`` adds one more ONNX int8 method. The build and the
tests look everything up here, so a new format or method is one new module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compress.registry import Registry
from edge_agent.contracts.vocab import FORMATS, PRECISIONS
from export.errors import ExportError


@dataclass(frozen=True)
class Exporter:
    """Writes a float torch model to a file of one format for one target."""

    format: str
    suffix: str
    export: Callable[[torch.nn.Module, torch.Tensor, Any, Path], Path]
    summary: str = ""
    file_key: Callable[[Any], tuple] = lambda target: ()  # target fields that change the file


@dataclass
class QuantizeJob:
    """Everything a quantizer may need; it uses what it needs.

    ``fp32_file()`` exports (once) the float file of ``model`` for ``target``; file
    quantizers (ORT, ai-edge-quantizer) start from it, torch-side ones (litert PT2E,
    INC) from ``model``. ``evaluate`` scores a torch model on the validation set
    (higher is better) for accuracy-aware tuning.
    """

    model: torch.nn.Module
    example: torch.Tensor
    calibration: torch.Tensor
    target: Any
    workdir: Path
    fp32_file: Callable[[], Path]
    evaluate: Callable[[torch.nn.Module], float] | None = None
    tolerable_loss: float = 0.01
    options: dict[str, Any] = field(default_factory=dict)

    def calibration_batches(self, batch: int = 1) -> list[torch.Tensor]:
        """The calibration set split into batches of ``batch`` samples."""
        return list(torch.split(self.calibration, batch))


@dataclass(frozen=True)
class Quantizer:
    """Makes the file of one (format, precision) by one method.

    ``default`` methods are tried unless the recipe names methods; opt-in ones
    (``inc``, the ``*-peer-default`` baselines) only when the recipe lists them.
    ``layers`` (for methods that quantize selectively) lists the layers that a job's file
    of this method (the path) quantized; such a method honours ``job.options["keep_float"]``
    (layers left in float) and ``job.options["quantize_only"]`` (the only layers
    quantized), which per-layer sensitivity and mixed precision use
    (``export/sensitivity.py``, ``export/mixed_precision.py``).
    """

    name: str
    format: str
    precision: str
    run: Callable[[QuantizeJob, Path], Path]
    default: bool = True
    summary: str = ""
    layers: Callable[[QuantizeJob, Path], list[str]] | None = None


EXPORTERS: Registry[Exporter] = Registry("export format", ExportError)
QUANTIZERS: Registry[Quantizer] = Registry("quantizer", ExportError)


def _check_vocab(what: str, fmt: str, precision: str | None = None) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"{what}: format {fmt!r} is not one of {', '.join(FORMATS)} "
                          "(add it to edge_agent/contracts/vocab.py and give it a runtime)")
    if precision is not None and precision not in PRECISIONS:
        raise ExportError(f"{what}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def register_exporter(exporter: Exporter) -> Exporter:
    """Register the exporter of one format (one of the shared ``FORMATS``)."""
    _check_vocab(f"exporter {exporter.format!r}", exporter.format)
    return EXPORTERS.register(exporter.format)(exporter)


def register_quantizer(quantizer: Quantizer) -> Quantizer:
    """Register a quantizer under (format, precision, name), from the shared vocabularies."""
    _check_vocab(f"quantizer {quantizer.name!r}", quantizer.format, quantizer.precision)
    return QUANTIZERS.register((quantizer.format, quantizer.precision, quantizer.name))(quantizer)


def quantizers_for(fmt: str, precision: str) -> list[Quantizer]:
    """Every quantizer registered for a format and precision, in registration order."""
    _load_builtins()
    return [q for (f, p, _), q in QUANTIZERS.items() if f == fmt and p == precision]


def exporter_for(fmt: str) -> Exporter:
    """The exporter registered for a format."""
    _load_builtins()
    return EXPORTERS.get(fmt)


def method_names() -> list[str]:
    """Every quantizer method name, without repeats."""
    _load_builtins()
    return list(dict.fromkeys(q.name for _, q in QUANTIZERS.items()))


def _load_builtins() -> None:
    from export import inc, onnx, tflite  # noqa: F401  (each registers itself)
