"""The typed contracts shared by build, device and cloud (stdlib only, Python 3.9).

- ``vocab``: formats, precisions, dtypes, QoS, defined once.
- ``version``: ``"MAJOR.MINOR"`` versions; unknown majors refused, newer minors read leniently.
- ``record``: the typed-dataclass helper behind every block, and the process-wide
  count of unknown fields ignored (``unknown_field_counts()``).
- ``telemetry``: the blocks inside device messages (``edge_agent.protocol``).
- ``reference``: the manifest's ``reference_stats``.
- ``build_info``: the manifest's ``metrics``, ``lineage`` and ``preprocessing``.
- ``examples``: one example of every message and of a manifest; writes docs/protocol.md.
"""

from edge_agent.contracts.build_info import Compression, Lineage, Metrics, Parity, Preprocessing
from edge_agent.contracts.record import Record, reset_unknown_field_counts, unknown_field_counts
from edge_agent.contracts.reference import InputReference, OutputReference, ReferenceStats
from edge_agent.contracts.telemetry import (
    ChannelHistogram,
    ConfidenceHist,
    EncodedInput,
    InputHist,
    LatencyMs,
    ModelRef,
    ModelState,
    OutboxFigures,
    Prediction,
    SystemFigures,
)
from edge_agent.contracts.version import Version, parse_version
from edge_agent.contracts.vocab import DTYPES, FORMATS, PRECISIONS, QOS

__all__ = [
    "DTYPES",
    "FORMATS",
    "PRECISIONS",
    "QOS",
    "ChannelHistogram",
    "Compression",
    "ConfidenceHist",
    "EncodedInput",
    "InputHist",
    "InputReference",
    "LatencyMs",
    "Lineage",
    "Metrics",
    "ModelRef",
    "ModelState",
    "OutboxFigures",
    "OutputReference",
    "Parity",
    "Prediction",
    "Preprocessing",
    "Record",
    "ReferenceStats",
    "SystemFigures",
    "Version",
    "parse_version",
    "reset_unknown_field_counts",
    "unknown_field_counts",
]
