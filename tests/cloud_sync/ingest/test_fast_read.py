"""The compiled reader (``fast_read``) agrees with the protocol's reader: for every
payload of the ingest corpora, for every device message example, and for each of
them mutated at every field path (a wrong type, null, a negative number, the field
removed, an unknown field added, a float where an int belongs, a bool, a huge integer),
``classify`` gives the same answer with the fast path as with the protocol's reader
alone: the same typed message and document, or the same quarantine reason and detail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud_sync.ingest import classify as c
from cloud_sync.ingest.fast_read import fast_read
from edge_agent import protocol as p
from edge_agent.contracts.examples import example_messages
from tests.cloud_sync.ingest import hostile
from tests.cloud_sync.ingest import messages as m

DEVICE = "dev-1"
DEVICE_KINDS = {p.TELEMETRY: "telemetry", p.SAMPLES: "samples", p.STATUS: "status",
                p.CMD_RESULT: "cmd/result"}
MUTANTS = ("wrong-type", None, -1, "drop", "unknown", 1.5, True, 10 ** 30, [], {})


def _examples() -> list[Any]:
    found = []
    for name, msg in example_messages().items():
        kind = next((k for k, prefix in DEVICE_KINDS.items() if name.split(" ")[0] == prefix),
                    None)
        if kind is not None:
            msg.device_id = DEVICE
            found.append(pytest.param(kind, msg.to_dict(), id=name))
    return found


def _paths(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every key path and list index path of a document (leaves and inner nodes)."""
    found = [path] if path else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:3]):
            found += _paths(value, (*path, i))
    return found


def _mutated(doc: dict[str, Any], path: tuple, mutant: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if mutant == "drop":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif mutant == "unknown":
        if isinstance(parent, dict):
            parent[f"{last}_extra"] = 1
        else:
            parent.append(parent[last])
    else:
        parent[last] = mutant
    return doc


def _slow(received: c.Received, monkeypatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(c, "_fast", lambda payload, kind: None)
        return c.classify(received)


def _same(received: c.Received, monkeypatch) -> None:
    fast, slow = c.classify(received), _slow(received, monkeypatch)
    assert type(fast) is type(slow), (received.payload[:300], fast, slow)
    if isinstance(slow, c.Rejected):
        assert (fast.reason, fast.detail) == (slow.reason, slow.detail)
    else:
        assert fast.message == slow.message and fast.doc == slow.doc
        assert fast.unknown_fields == slow.unknown_fields
        assert (fast.seq, fast.kind, fast.device_id) == (slow.seq, slow.kind, slow.device_id)


@pytest.mark.parametrize(("kind", "doc"), _examples())
def test_every_mutation_of_every_example_reads_the_same(kind, doc, monkeypatch):
    topic = m.topic(DEVICE, kind)
    payloads = [json.dumps(doc)]
    payloads += [json.dumps(_mutated(doc, path, mutant)) for path in _paths(doc)
                 for mutant in MUTANTS]
    payloads.append(json.dumps({**doc, "v": f"{p.PROTOCOL_VERSION.major}.99", "extra": 1}))
    payloads.append(json.dumps(doc).replace('"seq": ', '"seq": 1, "seq": '))  # duplicate key
    accepted = 0
    for text in payloads:
        received = c.Received(topic, text.encode(), 0.0)
        _same(received, monkeypatch)
        accepted += fast_read(kind, text) is not None
    assert accepted >= 2  # the example itself and harmless mutations take the fast path


def test_the_ingest_corpora_read_the_same(monkeypatch):
    cases = [(m.topic(DEVICE), payload) for payload, _why in hostile.corpus(DEVICE).values()]
    cases += list(m.malformed(DEVICE).values())
    cases += [(m.topic(DEVICE), m.telemetry(DEVICE, 3)),
              (m.topic(DEVICE, p.STATUS), m.status(DEVICE, 4)),
              (m.topic(DEVICE, p.SAMPLES), m.sample(DEVICE, 5))]
    for topic, payload in cases:
        _same(c.Received(topic, payload, 0.0), monkeypatch)


def test_the_simulators_messages_take_the_fast_path(monkeypatch):
    import numpy as np

    from cloud_sync.sim import SimSettings
    from cloud_sync.sim.device import SimDevice
    from cloud_sync.sim.shard import _model

    sim = SimDevice(DEVICE, "lab", _model(SimSettings(broker="mqtt://127.0.0.1:1")),
                    np.random.default_rng(0))
    for kind, payload in ((p.TELEMETRY, sim.telemetry(10.0, 200)),
                          (p.STATUS, sim.status("online")), (p.SAMPLES, sim.sample())):
        assert fast_read(kind, payload.decode()) is not None
        _same(c.Received(sim.topic(kind), payload, 0.0), monkeypatch)
