"""ONNX int8 through neural-compressor (INC) on the PyTorch side (opt-in method ``inc``).

INC quantizes the torch model (``compress/quantize_torch.py``, with its accuracy-aware
autotune), then the dynamo exporter writes the QDQ graph to ONNX. Measured against
ORT's own quantizer, ORT fuses fewer of INC's convolutions, so it is usually slower;
the search measures it like any other candidate. Registered for ONNX only: LiteRT
cannot run INC's graphs (uint8 activations with int8 weights).
"""

from __future__ import annotations

from pathlib import Path

from compress.quantize_torch import inc_quantize
from compress.recipe import IncConfig
from export.errors import export_failure
from export.onnx import dynamo_export
from export.quiet import quiet
from export.registry import QuantizeJob, Quantizer, register_quantizer


def inc_int8(job: QuantizeJob, out: Path) -> Path:
    """INC static int8 (autotuned when the job can evaluate), exported to ONNX QDQ."""
    cfg = job.options.get("inc", IncConfig())
    with quiet() as captured:
        try:
            quantized = inc_quantize(job.model, job.example[:1], job.calibration_batches(16),
                                     cfg, job.evaluate, job.tolerable_loss)
            dynamo_export(quantized, job.example[:1].expand(2, *job.example.shape[1:]).contiguous(),
                    out, job.target.opset)
        except Exception as exc:
            raise export_failure("onnx", exc, captured.text) from exc
    return out


register_quantizer(Quantizer("inc", "onnx", "int8", inc_int8, default=False,
                             summary="neural-compressor PT2E static int8 -> ONNX QDQ"))
