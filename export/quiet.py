"""Silence what exporters and converters print (C++ logs on fd 2, Python warnings, chatty
loggers) and keep it, so an error can quote it and a clean run prints nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

NOISY_LOGGERS = ("torch.onnx", "torch._export", "torch.export", "absl", "onnxscript",
                 "neural_compressor", "root", "litert_torch", "ai_edge_torch", "jax",
                 "torch._dynamo", "torch.fx", "onnx_ir")


@dataclass
class Captured:
    """What was printed while quiet (filled when the block ends)."""

    text: str = ""


@contextlib.contextmanager
def quiet() -> Iterator[Captured]:
    """Redirect fds 1 and 2 to a temp file and mute warnings and noisy loggers."""
    captured = Captured()
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")[-20000:]
