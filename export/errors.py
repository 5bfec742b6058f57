"""Errors of the export side, and how an exporter's failure is turned into one line that
names the operator the format cannot express."""

from __future__ import annotations

import re

from edge_agent.errors import EdgekitError, first_line


class ExportError(EdgekitError):
    """A model could not be exported or quantized for a target."""


class UnsupportedOperatorError(ExportError):
    """The target format cannot express one of the model's operators."""

    def __init__(self, fmt: str, operator: str, detail: str = "") -> None:
        self.format, self.operator = fmt, operator
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{fmt} cannot express operator {operator}{extra}")


class BuildError(EdgekitError):
    """The build cannot produce a bundle (e.g. no candidate within tolerance).

    ``report`` holds the build report when one was written, so callers can show it.
    """

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report


# Where exporters name the operator they choke on, most specific first.
_OPERATOR_PATTERNS = (
    re.compile(r"Lowering not found: ([\w.]+)"),                              # litert-torch
    re.compile(r"Exporting the operator '([\w:.]+)' to ONNX opset"),         # TorchScript
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),    # dynamo
    re.compile(r"Unsupported FX nodes: \{'call_function': \['([\w.]+)'"),    # dynamo (older)
    re.compile(r"failed to legalize operation '([\w.]+)'"),                  # MLIR converter
    re.compile(r"target=torch\.ops\.([\w.]+)"),                              # any fx node
)


def operator_in(text: str) -> str | None:
    """The operator an exporter's error message blames, if it names one."""
    for pattern in _OPERATOR_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1).replace("::", ".")
    return None


def export_failure(fmt: str, exc: BaseException, captured: str = "") -> ExportError:
    """The error to raise when exporting to ``fmt`` failed with ``exc``."""
    chain, cause = [str(exc)], exc.__cause__
    while cause is not None:
        chain.append(str(cause))
        cause = cause.__cause__
    operator = operator_in("\n".join([*chain, captured]))
    if operator:
        return UnsupportedOperatorError(fmt, operator, f"{type(exc).__name__}")
    return ExportError(f"{fmt} export failed: {type(exc).__name__}: {first_line(exc)}")
