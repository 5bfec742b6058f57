"""The MQTT protocol: topics and versioned messages round-trip, bad input is refused."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import protocol as p
from edge_agent.errors import ProtocolError


def telemetry(**over) -> p.Telemetry:
    doc = dict(device_id="pi-1", seq=7, ts=1700000000.5, model={"name": "digits", "version": "3"},
               window_s=10.0, inferences=100, errors=1,
               latency_ms={"p50": 1.0, "p95": 2.0, "p99": 3.0},
               confidence={"edges": [0, 0.5, 1], "counts": [10, 90], "mean": 0.8},
               class_counts={"0": 40, "1": 60}, input_hist=None,
               outbox={"queued": 0, "dropped": 0}, system={"cpu_percent": 3.5})
    doc.update(over)
    return p.Telemetry(**doc)


EXAMPLES = [
    telemetry(),
    p.Sample(device_id="pi-1", seq=1, ts=1.0, model={"name": "m", "version": "1"},
             reason="low_confidence", prediction={"class": 3, "confidence": 0.2},
             input={"dtype": "float32", "shape": [1, 2],
                    "data": base64.b64encode(b"\0" * 8).decode()}),
    p.Status(device_id="pi-1", seq=2, ts=1.0, state="online", model={"name": "m", "version": "1"},
             agent_version="0.1.0"),
    p.Command(cmd_id="c1", type="update", ts=1.0,
              args={"url": "http://cloud/b.ekb", "sha256": "a" * 64, "version": "4"}),
    p.Command(cmd_id="c2", type="set-config", ts=1.0, args={"telemetry_interval_s": 5}),
    p.Command(cmd_id="c3", type="ping", ts=1.0),
    p.CommandResult(device_id="pi-1", seq=3, ts=1.0, cmd_id="c1", type="update", ok=False,
                    error="signature does not verify"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.KIND)
def test_every_message_round_trips(message):
    again = p.decode(message.KIND, message.to_json())
    assert again == message
    assert json.loads(message.to_json())["v"] == str(p.PROTOCOL_VERSION) == "1.3"


DEVICE_EXAMPLES = [m for m in EXAMPLES if isinstance(m, p.DeviceMessage)]


@pytest.mark.parametrize("message", DEVICE_EXAMPLES, ids=lambda m: m.KIND)
def test_every_device_message_carries_its_incarnation(message):
    message.incarnation = "9c41d2e07b5a3f18"
    doc = json.loads(message.to_json())
    assert doc["incarnation"] == "9c41d2e07b5a3f18"
    assert p.decode(message.KIND, message.to_json()).incarnation == "9c41d2e07b5a3f18"


@pytest.mark.parametrize("message", DEVICE_EXAMPLES, ids=lambda m: m.KIND)
@pytest.mark.parametrize("version", ["1.1", 1])
def test_a_message_from_before_incarnations_reads_as_the_legacy_one(message, version):
    doc = {**message.to_dict(), "v": version}
    del doc["incarnation"]
    read = p.MESSAGE_TYPES[message.KIND].from_dict(doc)
    assert read.incarnation == p.LEGACY_INCARNATION == "" and read.unknown_fields == ()


@pytest.mark.parametrize("bad", ["has space", "x" * 33, "dots.not.allowed", 7])
def test_a_bad_incarnation_is_refused(bad):
    with pytest.raises(ProtocolError, match="field 'incarnation' must be"):
        p.Telemetry.from_dict({**telemetry().to_dict(), "incarnation": bad})


@pytest.mark.parametrize("kind", p.KINDS)
def test_topics_round_trip(kind):
    name = p.topic("fleet-a", "pi-1", kind)
    assert name == f"edgekit/fleet-a/pi-1/{kind}"
    assert p.parse_topic(name) == ("fleet-a", "pi-1", kind)


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "-lead", "sp ace"])
def test_bad_ids_are_refused_in_topics(bad):
    with pytest.raises(ProtocolError, match="not valid"):
        p.topic(bad, "pi-1", p.TELEMETRY)


@pytest.mark.parametrize("name", ["other/f/d/telemetry", "edgekit/f/d", "edgekit/f/d/unknown"])
def test_foreign_topics_are_refused(name):
    with pytest.raises(ProtocolError):
        p.parse_topic(name)


def test_subscription_wildcards():
    assert p.subscription(p.TELEMETRY) == "edgekit/+/+/telemetry"
    assert p.subscription(p.CMD, "f", "d") == "edgekit/f/d/cmd"


def _doc(message) -> dict:
    return json.loads(message.to_json())


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("seq"), "missing field 'seq'"),
    (lambda d: d.update(seq="7"), "field 'seq' must be an integer"),
    (lambda d: d.update(seq=-1), "must be >= 0"),
    (lambda d: d.update(inferences=True), "must be an integer"),
    (lambda d: d.update(v=2), "protocol version 2.0 is not supported"),
    (lambda d: d.update(v="2.1"), r"protocol version 2.1 is not supported .*reads 1\.x"),
    (lambda d: d.update(v="1"), "field 'v' must be a version"),
    (lambda d: d.update(v=1.1), "field 'v' must be a version"),
    (lambda d: d.pop("v"), "missing field 'v'"),
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d.update(device_id="a/b"), "not a valid device id"),
    (lambda d: d.update(class_counts={"1": -3}), "class_counts.1"),
    (lambda d: d.update(ts=float("nan")), "field 'ts' must be a number"),
])
def test_bad_telemetry_is_refused_with_the_field_named(mutate, match):
    doc = _doc(telemetry())
    mutate(doc)
    with pytest.raises(ProtocolError, match=match):
        p.Telemetry.from_json(json.dumps(doc).encode())


@pytest.mark.parametrize("args, match", [
    ({}, "missing field 'args.url'"),
    ({"url": "file:///etc/passwd", "sha256": "a" * 64, "version": "2"}, "http"),
    ({"url": "http://x/b", "sha256": "XYZ", "version": "2"}, "64 lowercase hex"),
    ({"url": "http://x/b", "sha256": "a" * 64, "version": "2", "cmd": "rm"}, "unknown field"),
    ({"url": "http://x/b", "sha256": "a" * 64, "version": "2", "signature": "x"},
     "unknown field 'args.signature'"),
])
def test_bad_update_commands_are_refused(args, match):
    doc = {"v": 1, "cmd_id": "c", "type": "update", "ts": 1.0, "args": args}
    with pytest.raises(ProtocolError, match=match):
        p.Command.from_json(json.dumps(doc).encode())


def test_unknown_command_type_is_refused():
    doc = {"v": 1, "cmd_id": "c", "type": "format-disk", "ts": 1.0, "args": {}}
    with pytest.raises(ProtocolError, match="must be one of"):
        p.Command.from_json(json.dumps(doc).encode())


def test_oversized_payload_is_refused_before_parsing():
    with pytest.raises(ProtocolError, match="over the"):
        p.Telemetry.from_json(b" " * (p.MAX_PAYLOAD_BYTES + 1))


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"not json", b"[1,2]", b"null", b"{}"])
def test_garbage_is_refused(payload):
    with pytest.raises(ProtocolError):
        p.Command.from_json(payload)


def test_sample_needs_base64_data():
    doc = _doc(EXAMPLES[1])
    doc["input"]["data"] = "!!!"
    with pytest.raises(ProtocolError, match="base64"):
        p.Sample.from_json(json.dumps(doc).encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(p.KINDS), doc=st.dictionaries(
    st.sampled_from(["v", "cmd_id", "type", "ts", "args", "device_id", "seq", "model", "state"]),
    json_values, max_size=8))
def test_fuzzed_payloads_only_ever_raise_protocol_error(kind, doc):
    with contextlib.suppress(ProtocolError):
        p.decode(kind, json.dumps(doc).encode())
