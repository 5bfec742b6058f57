"""Static int8 quantization on the PyTorch side with neural-compressor (INC) 3.x.

INC's PT2E path: ``export`` -> ``prepare`` -> calibrate -> ``convert``, or its
accuracy-aware ``autotune`` over a small config space (symmetric or asymmetric
activations, per-channel or per-tensor weights) scored by the caller's metric.
The result is an fx GraphModule with quantize/dequantize ops that the ONNX exporter
turns into a QDQ model (``export/inc.py``). It is not fed to litert-torch: LiteRT
cannot run INC's uint8-activation graphs (it crashes or refuses to prepare them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from compress import progress
from compress.errors import CompressError
from compress.recipe import IncConfig

_SEARCH_SPACE = {"act_sym": [False, True], "w_granularity": ["per_channel", "per_tensor"]}


def _quiet_inc() -> None:
    for name in ("neural_compressor", "neural_compressor.torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _export(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    from neural_compressor.torch.export import export

    # Batch 1 would specialise the graph to batch 1, so export with a batch of 2 and a
    # dynamic batch dimension (INC needs its own export, not a plain nn.Module).
    batch = example.expand(2, *example.shape[1:]).contiguous()
    name = _first_arg_name(model)
    return export(model.eval(), example_inputs=(batch,),
                  dynamic_shapes={name: {0: torch.export.Dim("batch")}})


def _first_arg_name(model: torch.nn.Module) -> str:
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    if not params:
        raise CompressError("the model's forward() takes no input")
    return params[0]


def inc_quantize(model: torch.nn.Module, example: torch.Tensor,
                 calibration: list[torch.Tensor], cfg: IncConfig,
                 evaluate: Callable[[torch.nn.Module], float] | None = None,
                 tolerable_loss: float = 0.01) -> torch.nn.Module:
    """An INC-quantized GraphModule of ``model``, calibrated on ``calibration`` batches.

    With ``cfg.autotune`` and an ``evaluate`` function (higher is better), INC tries up
    to ``cfg.max_trials`` configs and keeps the first within ``tolerable_loss``
    (relative to the fp32 score); otherwise it uses INC's default static config.
    """
    from neural_compressor.torch.quantization import (
        StaticQuantConfig,
        TuningConfig,
        autotune,
        convert,
        prepare,
    )

    _quiet_inc()
    exported = _export(model, example)

    def run_fn(prepared: torch.nn.Module) -> None:
        with torch.no_grad():
            for batch in progress.track(calibration, "calibrating (INC)", len(calibration)):
                prepared(batch)

    if cfg.autotune and evaluate is not None:
        # INC 3.10 fails on a bare config (TypeError: not iterable): wrap it in a list.
        tuning = TuningConfig(config_set=[StaticQuantConfig(**_SEARCH_SPACE)],
                              max_trials=cfg.max_trials, tolerable_loss=tolerable_loss)
        best = autotune(exported, tuning, eval_fn=evaluate, run_fn=run_fn,
                        example_inputs=(example,))
        if best is None:
            raise CompressError(f"INC autotune found no config within {tolerable_loss:.2%} "
                                f"in {cfg.max_trials} trials")
        return best
    prepared = prepare(exported, StaticQuantConfig())
    run_fn(prepared)
    return convert(prepared)
