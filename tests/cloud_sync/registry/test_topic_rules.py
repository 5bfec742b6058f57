"""The one source of the broker's rules: filter coverage, shared subscriptions, and the
ACL file rendered from the same rules the HTTP endpoints and dynsec use."""

from __future__ import annotations

import pytest

from cloud_sync.registry.broker import device_acl, service_acl
from cloud_sync.registry.topic_rules import (
    covers,
    device_rules,
    may_publish,
    may_subscribe,
    service_rules,
    unshared,
)


@pytest.mark.parametrize("pattern, topic_filter, expected", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/+", True),
    ("a/b", "a/+", False), ("a/+", "a/#", False), ("a/#", "a/b/c", True), ("a/#", "a", True),
    ("a/#", "a/#", True), ("a/+/c", "a/+/c", True), ("a/+", "a/b/c", False),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("a/b/c", "a/b", False),
])
def test_covers(pattern, topic_filter, expected):
    assert covers(pattern, topic_filter) is expected


def test_shared_subscriptions_are_judged_by_their_filter():
    assert unshared("$share/g/a/b") == "a/b" and unshared("a/b") == "a/b"
    assert unshared("$share/g") is None and unshared("$share/+/a") is None
    assert may_subscribe(service_rules(), "$share/edgekit-ingest/edgekit/+/+/samples")
    assert not may_subscribe(device_rules("pi-1", "lab"), "$share/g/edgekit/lab/pi-2/cmd")


def test_publish_needs_a_concrete_topic():
    rules = device_rules("pi-1", "lab")
    assert may_publish(rules, "edgekit/lab/pi-1/telemetry")
    assert not may_publish(rules, "edgekit/lab/pi-1/#")
    assert not may_publish(rules, "")
    assert not may_publish(service_rules(), "edgekit/lab/pi-1/telemetry")


def test_the_acl_file_renders_the_same_rules():
    lines = device_acl("pi-1", "lab")
    assert lines[0] == "user pi-1"
    assert lines[1:] == [f"topic {r.access} {r.topic}" for r in device_rules("pi-1", "lab")]
    assert service_acl("svc")[1:] == [f"topic {r.access} {r.topic}" for r in service_rules()]
