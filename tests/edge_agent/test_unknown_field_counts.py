"""The process-wide count of ignored unknown fields is bounded: the first MAX_COUNTED
distinct fields by name, every later one as "other", so a sender inventing a new key per
message (or thousands in one) cannot grow an agent's or an ingest worker's memory."""

from __future__ import annotations

import json

import pytest

from edge_agent import protocol as p
from edge_agent.contracts import reset_unknown_field_counts, unknown_field_counts
from edge_agent.contracts.examples import example_messages
from edge_agent.contracts.record import KEY_CHARS, MAX_COUNTED, OTHER

NEWER = f"{p.PROTOCOL_VERSION.major}.{p.PROTOCOL_VERSION.minor + 1}"


@pytest.fixture(autouse=True)
def _fresh_counts():
    reset_unknown_field_counts()
    yield
    reset_unknown_field_counts()


def _read(**extra) -> None:
    doc = {**example_messages()["telemetry"].to_dict(), "v": NEWER, **extra}
    p.decode(p.TELEMETRY, json.dumps(doc).encode())


def test_invented_keys_count_by_name_up_to_the_cap_then_as_other():
    for i in range(MAX_COUNTED + 400):
        _read(**{f"invented_{i}": 1, "steady": 1})
    counts = unknown_field_counts()
    assert len(counts) == MAX_COUNTED + 1 and OTHER in counts
    assert counts["telemetry:steady"] == MAX_COUNTED + 400  # a counted field keeps counting
    assert sum(counts.values()) == 2 * (MAX_COUNTED + 400)  # nothing is lost


def test_one_message_with_thousands_of_keys_and_long_paths_stays_bounded():
    _read(**{f"{i}{'x' * 300}": i for i in range(3000)})
    counts = unknown_field_counts()
    assert len(counts) == MAX_COUNTED + 1 and sum(counts.values()) == 3000
    assert max(len(k) for k in counts) <= KEY_CHARS
