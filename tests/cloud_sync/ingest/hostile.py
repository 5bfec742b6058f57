"""Hostile payloads for ingest: each must end stored or quarantined, never stall a worker.

``corpus(device)`` maps a name to (payload, reason): the quarantine reason classify
gives, ``None`` for a payload it accepts (stored, or refused by the store as
``store_error``), or ``STORE`` for one the store refuses.
"""

from __future__ import annotations

import json

from edge_agent import protocol as p
from tests.cloud_sync.ingest import messages as m

STORE = "stored or store_error"
DEEP = 5000  # ~10 KB: under the size cap, past json.loads' recursion limit


def _newer(device: str, seq: int, tail: str) -> bytes:
    """Valid telemetry of a newer minor (unknown fields allowed) with ``tail`` appended
    as raw JSON members."""
    doc = json.loads(m.telemetry(device, seq))
    doc["v"] = f"{p.PROTOCOL_VERSION.major}.99"
    return (json.dumps(doc)[:-1] + ", " + tail + "}").encode()


def _many_keys(device: str, seq: int, n: int = 50_000) -> bytes:
    keys = ", ".join(f'"k{i:05d}": {i}' for i in range(n))
    return _newer(device, seq, keys)


def corpus(device: str) -> dict[str, tuple[bytes, str | None]]:
    """name -> (payload, expected classify reason or None/STORE)."""
    arrays = b"[" * DEEP + b"]" * DEEP
    objects = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    return {
        "deep_arrays": (b'{"x": ' + arrays + b"}", "bad_json"),
        "deep_objects": (objects, "bad_json"),
        "deep_in_valid_message": (_newer(device, 1, '"x": ' + "[" * 200 + "]" * 200),
                                  "bad_json"),
        "bare_array": (b"[1, 2, 3]", "bad_json"),
        "bare_string": (b'"telemetry"', "bad_json"),
        "bare_null": (b"null", "bad_json"),
        "empty": (b"", "bad_json"),
        "not_utf8": (b'{"v": "\xff\xfe"}', "bad_json"),
        "huge_integer": (_newer(device, 2, '"x": ' + "9" * 5000), "bad_json"),
        "nan_literal": (_newer(device, 3, '"x": NaN'), "bad_json"),
        "infinity_literal": (m.telemetry(device, 4)[:-1] + b', "ts": -Infinity}', "bad_json"),
        "overflowing_float": (_newer(device, 5, '"x": 1e999'), "bad_json"),
        "overflowing_negative_float": (_newer(device, 11, '"x": -1.5e400'), "bad_json"),
        "largest_finite_float": (_newer(device, 12, '"x": -1.7e308'), None),
        "seq_past_bigint": (m.telemetry(device, 10 ** 30), STORE),
        "lone_surrogate": (_newer(device, 6, '"x": "\\ud800"'), None),
        "nul_character": (_newer(device, 7, '"x": "a\\u0000b"'), None),
        "50k_keys_old_minor": (m.telemetry(device, 8)[:-1] + b", " + b", ".join(
            b'"k%05d": 0' % i for i in range(50_000)) + b"}", "bad_fields"),
        "50k_keys_newer_minor": (_many_keys(device, 9), None),
        "oversize": (b'{"x": "' + b"a" * p.MAX_PAYLOAD_BYTES + b'"}', "oversize"),
    }
