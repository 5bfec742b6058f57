"""Who may use which topic: the one source of the broker's access rules.

A device may write only its own telemetry, samples, status and cmd/result topics and
read only its own cmd topic; the cloud's service user reads every device topic and
writes every cmd topic and the fleet event topics (``edgekit/<fleet>/_events/...``).
``broker`` renders these rules as Mosquitto ACL lines, ``dynsec`` as dynamic-security
roles, and the HTTP auth endpoints (``api/routers/broker_auth``) answer from
``may_publish`` / ``may_subscribe``, so the three never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent import protocol

READ, WRITE = "read", "write"
DEVICE_WRITES = (protocol.TELEMETRY, protocol.SAMPLES, protocol.STATUS, protocol.CMD_RESULT)
DEVICE_READS = (protocol.CMD,)
SERVICE_RULES = ((READ, protocol.subscription("#")),
                 (WRITE, protocol.subscription(protocol.CMD)),
                 (WRITE, f"{protocol.TOPIC_ROOT}/+/_events/#"))
SHARED_PREFIX = "$share/"


@dataclass(frozen=True)
class Rule:
    """``access`` (read: subscribe and receive; write: publish) to a topic or filter."""

    access: str
    topic: str


def device_rules(device_id: str, fleet: str) -> tuple[Rule, ...]:
    """One device's rules: its own topics only."""
    return (*(Rule(WRITE, protocol.topic(fleet, device_id, k)) for k in DEVICE_WRITES),
            *(Rule(READ, protocol.topic(fleet, device_id, k)) for k in DEVICE_READS))


def service_rules() -> tuple[Rule, ...]:
    """The cloud service user's rules."""
    return tuple(Rule(access, topic) for access, topic in SERVICE_RULES)


def may_publish(rules: Iterable[Rule], topic: str) -> bool:
    """True when a write rule matches the concrete ``topic`` (no wildcards allowed)."""
    if not _valid(topic) or "+" in topic.split("/") or "#" in topic.split("/"):
        return False
    return any(r.access == WRITE and covers(r.topic, topic) for r in rules)


def may_subscribe(rules: Iterable[Rule], topic_filter: str) -> bool:
    """True when a read rule covers every topic ``topic_filter`` can match; a shared
    subscription (``$share/<group>/<filter>``) is judged by its filter."""
    topic_filter = unshared(topic_filter)
    if topic_filter is None or not _valid(topic_filter):
        return False
    return any(r.access == READ and covers(r.topic, topic_filter) for r in rules)


def unshared(topic_filter: str) -> str | None:
    """The filter inside ``$share/<group>/...`` (the filter itself when not shared; None
    for a malformed shared subscription)."""
    if not topic_filter.startswith(SHARED_PREFIX):
        return topic_filter
    group, sep, rest = topic_filter[len(SHARED_PREFIX):].partition("/")
    return rest if sep and group and rest and not set(group) & {"+", "#"} else None


def covers(pattern: str, topic_filter: str) -> bool:
    """True when every topic matched by ``topic_filter`` is matched by ``pattern``
    (MQTT wildcards on both sides; a plain topic is a filter matching itself)."""
    want, have = pattern.split("/"), topic_filter.split("/")
    for i, level in enumerate(want):
        if level == "#":  # at the top, '#' and '+' never match a '$' topic
            return i > 0 or not have[0].startswith("$")
        if i >= len(have):
            return False
        if have[i] == "#" or (have[i] == "+" and level != "+"):
            return False
        if level != "+" and level != have[i]:
            return False
        if level == "+" and i == 0 and have[i].startswith("$"):
            return False
    return len(want) == len(have)


def _valid(topic: str) -> bool:
    if not topic or "\0" in topic or len(topic.encode("utf-8")) > 65535:
        return False
    levels = topic.split("/")
    return all(level in ("+", "#") or ("+" not in level and "#" not in level)
               for level in levels) and "#" not in levels[:-1]
