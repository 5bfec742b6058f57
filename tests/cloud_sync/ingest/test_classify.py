"""classify(): every quarantine reason that needs no store, and valid messages of each kind."""

from __future__ import annotations

import json

import pytest

from cloud_sync.ingest.classify import REASONS, Accepted, Received, Rejected, classify
from tests.cloud_sync.ingest import messages as m


@pytest.mark.parametrize("reason", sorted(m.malformed("pi-1")))
def test_each_bad_message_gets_its_reason(reason):
    topic, payload = m.malformed("pi-1")[reason]
    judged = classify(Received(topic, payload, 1.0))
    assert isinstance(judged, Rejected)
    assert judged.reason == reason and judged.reason in REASONS
    assert judged.detail


@pytest.mark.parametrize("kind,payload", [("telemetry", m.telemetry("pi-1", 5)),
                                          ("status", m.status("pi-1", 5)),
                                          ("samples", m.sample("pi-1", 5))])
def test_valid_messages_are_accepted(kind, payload):
    judged = classify(Received(m.topic("pi-1", kind), payload, 1.0))
    assert isinstance(judged, Accepted)
    assert (judged.fleet, judged.device_id, judged.kind, judged.seq) == ("lab", "pi-1", kind, 5)


def test_newer_minor_unknown_fields_are_accepted_and_listed():
    doc = json.loads(m.telemetry("pi-1", 5))
    doc.update(v="1.9", gpu={"temp": 3})
    judged = classify(Received(m.topic("pi-1"), json.dumps(doc).encode(), 1.0))
    assert isinstance(judged, Accepted)
    assert judged.unknown_fields == ("gpu",)


def test_a_json_array_is_bad_json_and_cmd_is_not_a_device_kind():
    assert classify(Received(m.topic("pi-1"), b"[1]", 1.0)).reason == "bad_json"
    assert classify(Received(m.topic("pi-1", "cmd"), b"{}", 1.0)).reason == "bad_topic"
