"""What a decoded device message becomes as a row of ``messages`` or ``samples``.

Rows are built from the typed messages of ``edge_agent.protocol`` (what ingest has
already validated), never from ``.get()`` chains on raw JSON: a telemetry's numeric
columns come from its typed blocks (``latency_ms.p50``, ``confidence.mean``, ...).
The message's plain JSON is kept whole in ``payload``. The numeric columns
extracted per kind are a registry: add a kind's extractor to ``EXTRACTORS``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from edge_agent import protocol

MESSAGE_COLUMNS = ("window_s", "inferences", "errors", "latency_p50", "latency_p95",
                   "latency_p99", "confidence_mean", "frames", "empty_frames", "detections",
                   "score_mean")
Message = Any  # an edge_agent.protocol message (Telemetry, Status, CommandResult, Sample)


class JsonDoc(dict):
    """A decoded JSON object that keeps the text it was decoded from.

    A writer that stores JSON as text (PostgreSQL's COPY, ``store.writes``) sends
    ``text`` as received instead of encoding the object again (about a quarter of a
    COPY's time); everyone else sees a plain dict."""

    __slots__ = ("text",)

    def __init__(self, doc: dict[str, Any], text: str) -> None:
        super().__init__(doc)
        self.text = text


def _telemetry_columns(msg: protocol.Telemetry) -> dict[str, Any]:
    latency = msg.latency_ms
    return {"window_s": msg.window_s, "inferences": msg.inferences, "errors": msg.errors,
            "latency_p50": latency.p50, "latency_p95": latency.p95, "latency_p99": latency.p99,
            "confidence_mean": msg.confidence.mean if msg.confidence else None,
            **_detection_columns(msg.detection)}


def _detection_columns(window: Any) -> dict[str, Any]:
    """A detector's headline figures (protocol 1.3); none for other tasks."""
    if window is None:
        return {}
    return {"frames": window.frames, "empty_frames": window.empty_frames,
            "detections": sum(window.score_hist), "score_mean": window.mean_score}


EXTRACTORS: dict[str, Callable[[Any], dict[str, Any]]] = {
    protocol.TELEMETRY: _telemetry_columns,
}


def typed(kind: str, message: Message | dict[str, Any]) -> Message:
    """The typed message (a plain JSON dict is read, strictly, as ``kind``)."""
    if isinstance(message, dict):
        return protocol.MESSAGE_TYPES[kind].from_dict(message)
    return message


def _model(msg: Message) -> tuple[str | None, str | None]:
    model = getattr(msg, "model", None)
    return (model.name, model.version) if model is not None else (None, None)


def message_row(fleet: str | None, kind: str, message: Message | dict[str, Any],
                received_at: float, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``messages`` row (every column, so a batch can be one executemany).

    ``payload``: the message's JSON as received (ingest has it already decoded;
    re-encoding the typed message would cost as much as reading it)."""
    msg = typed(kind, message)
    if payload is None:
        payload = message if isinstance(message, dict) else msg.to_dict()
    name, version = _model(msg)
    row = dict.fromkeys(MESSAGE_COLUMNS)
    row.update(EXTRACTORS.get(kind, lambda _msg: {})(msg))
    row.update(device_id=msg.device_id, fleet=fleet, incarnation=msg.incarnation, kind=kind,
               seq=msg.seq, ts=msg.ts, received_at=received_at, model_name=name,
               model_version=version, payload=payload)
    return row


def sample_row(fleet: str | None, message: protocol.Sample | dict[str, Any],
               received_at: float) -> dict[str, Any]:
    """A ``samples`` row: the input's bytes decoded, the rest of the message as payload
    (a detector's ``detections`` included; a classifier's prediction in columns too)."""
    msg = typed(protocol.SAMPLES, message)
    name, version = _model(msg)
    payload = msg.to_dict()
    payload["input"] = {k: v for k, v in payload["input"].items() if k != "data"}
    return {"device_id": msg.device_id, "fleet": fleet, "incarnation": msg.incarnation,
            "seq": msg.seq, "ts": msg.ts, "received_at": received_at, "model_name": name,
            "model_version": version, "reason": msg.reason,
            "pred_class": msg.prediction.class_index if msg.prediction else None,
            "pred_confidence": msg.prediction.confidence if msg.prediction else None,
            "detections": None if msg.detections is None else len(msg.detections),
            "input_dtype": msg.input.dtype,
            "input_shape": list(msg.input.shape), "input_data": base64.b64decode(msg.input.data),
            "payload": payload}
