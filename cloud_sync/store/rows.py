"""What a decoded device message becomes as a row of ``messages`` or ``samples``.

Works on the message's JSON dict (``Message.to_dict()`` or the decoded payload),
so it does not depend on the message classes' Python shapes. The numeric columns
extracted per kind are a registry: add a kind's extractor to ``EXTRACTORS``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from edge_agent import protocol

MESSAGE_COLUMNS = ("window_s", "inferences", "errors", "latency_p50", "latency_p95",
                   "latency_p99", "confidence_mean")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _block(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _telemetry_columns(doc: dict[str, Any]) -> dict[str, Any]:
    latency = _block(doc, "latency_ms")
    return {"window_s": _number(doc.get("window_s")), "inferences": _count(doc.get("inferences")),
            "errors": _count(doc.get("errors")),
            **{f"latency_{q}": _number(latency.get(q)) for q in ("p50", "p95", "p99")},
            "confidence_mean": _number(_block(doc, "confidence").get("mean"))}


EXTRACTORS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    protocol.TELEMETRY: _telemetry_columns,
}


def _model(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    model = _block(doc, "model")
    name, version = model.get("name"), model.get("version")
    return (name if isinstance(name, str) else None,
            str(version) if isinstance(version, (str, int)) else None)


def message_row(fleet: str | None, kind: str, doc: dict[str, Any], received_at: float
                ) -> dict[str, Any]:
    """A ``messages`` row (every column, so a batch can be one executemany)."""
    name, version = _model(doc)
    row = dict.fromkeys(MESSAGE_COLUMNS)
    row.update(EXTRACTORS.get(kind, lambda _doc: {})(doc))
    row.update(device_id=doc["device_id"], fleet=fleet, kind=kind, seq=doc["seq"],
               ts=float(doc["ts"]), received_at=received_at, model_name=name,
               model_version=version, payload=doc)
    return row


def sample_row(fleet: str | None, doc: dict[str, Any], received_at: float) -> dict[str, Any]:
    """A ``samples`` row: the input's bytes decoded, the rest of the message as payload."""
    spec = doc["input"]
    name, version = _model(doc)
    prediction = _block(doc, "prediction")
    payload = dict(doc, input={k: v for k, v in spec.items() if k != "data"})
    return {"device_id": doc["device_id"], "fleet": fleet, "seq": doc["seq"],
            "ts": float(doc["ts"]), "received_at": received_at, "model_name": name,
            "model_version": version, "reason": doc["reason"],
            "pred_class": _count(prediction.get("class")),
            "pred_confidence": _number(prediction.get("confidence")),
            "input_dtype": spec["dtype"], "input_shape": list(spec["shape"]),
            "input_data": base64.b64decode(spec["data"]), "payload": payload}
