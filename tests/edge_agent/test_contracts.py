"""The typed contracts: every block round-trips, bad shapes are refused with the field named,
and the shared vocabularies are complete (every format runs, every precision has a tolerance)."""

from __future__ import annotations

import json

import pytest

from edge_agent import contracts as c
from edge_agent.contracts.examples import example_manifest, example_messages
from edge_agent.errors import BundleError, ProtocolError
from edge_agent.golden import TOLERANCES
from edge_agent.runtimes import registered_formats

BLOCKS = {
    "latency": c.LatencyMs(1.0, 2.0, None),
    "confidence": c.ConfidenceHist(edges=[0.0, 0.5, 1.0], counts=[1, 3], mean=0.7),
    "input_hist": c.InputHist(bin_edges=[0.0, 1.0, 2.0], channel_axis=1, below=[0, 1],
                              above=[2, 0], per_channel=[[1, 2], [3, 4]]),
    "outbox": c.OutboxFigures(queued=3, queued_bytes=300),
    "system": c.SystemFigures(cpu_percent=5.0, temp_c=-3.5),
    "prediction": c.Prediction(class_index=3, confidence=0.4),
    "metrics": c.Metrics(size_bytes=10, parity=c.Parity(0.1, 1.0, c.Parity(0.0, 1.0))),
    "lineage": c.Lineage(recipe={"version": 1}, compression=c.Compression(0.5, {"prune": {}})),
    "preprocessing": c.Preprocessing(steps=[{"op": "scale", "factor": 0.5}], layout="NCHW"),
    "reference": example_manifest().reference_stats,
}


@pytest.mark.parametrize("block", BLOCKS.values(), ids=list(BLOCKS))
def test_every_block_round_trips_through_json(block):
    again = type(block).from_dict(json.loads(json.dumps(block.to_dict())))
    assert again == block and again.unknown_fields == ()


def test_prediction_class_is_the_json_key_class():
    assert BLOCKS["prediction"].to_dict() == {"class": 3, "confidence": 0.4}


@pytest.mark.parametrize("block, change, match", [
    ("confidence", {"counts": [1, 2, 3]}, "field 'confidence.counts' must have 2 entries"),
    ("confidence", {"edges": [1.0, 0.5]}, "'confidence.edges' must hold at least 2 strictly"),
    ("confidence", {"mean": 1.5}, "'confidence.mean' must be between 0 and 1"),
    ("input_hist", {"per_channel": [[1, 2], [3]]}, r"'input_hist.per_channel\[1\]' must hold 2"),
    ("input_hist", {"below": [0]}, "'input_hist.below' and 'above' must have one entry per"),
    ("input_hist", {"channel_axis": -1}, "'input_hist.channel_axis' must be >= 0"),
    ("latency", {"p50": "fast"}, "'latency.p50' must be a number or null, got str"),
    ("outbox", {"queued": 1.5}, "'outbox.queued' must be an integer"),
    ("system", {"rss_mb": True}, "'system.rss_mb' must be a number"),
    ("outbox", {"gone": 1}, "unknown field 'outbox.gone'; allowed: dropped, dropped_bytes"),
])
def test_bad_blocks_are_refused_with_the_dotted_field(block, change, match):
    doc = dict(BLOCKS[block].to_dict(), **change)
    with pytest.raises(ProtocolError, match=match):
        type(BLOCKS[block]).from_dict(doc, block)


@pytest.mark.parametrize("change, match", [
    ({"n": -1}, "field 'reference_stats.n' must be >= 0"),
    ({"output": {"class_distribution": [0.2], "confidence_edges": [0, 1],
                 "confidence_hist": [1], "probabilities": True}}, "must sum to 1"),
    ({"input": {"bin_edges": [0, 1], "channel_axis": 1, "below": [0], "above": [0],
                "per_channel": [[1]], "range": [2, 1], "mean": [0], "std": [0]}},
     r"'reference_stats.input.range' must be \[low, high\]"),
])
def test_bad_reference_stats_are_refused(change, match):
    doc = dict(BLOCKS["reference"].to_dict(), **change)
    with pytest.raises(BundleError, match=match):
        c.ReferenceStats.from_dict(doc, "reference_stats")


def test_preprocessing_steps_need_an_op():
    with pytest.raises(BundleError, match=r"'preprocessing.steps' \[0\] must be an object"):
        c.Preprocessing.from_dict({"steps": [{"factor": 2}]}, "preprocessing")


def test_records_accept_plain_dicts_for_their_blocks():
    metrics = c.Metrics(parity={"max_abs_diff": 0.1, "top1_agreement": 1.0})
    assert metrics.parity == c.Parity(0.1, 1.0)


def test_reference_confidence_is_comparable_with_telemetry():
    ref = BLOCKS["reference"].output.confidence()
    assert isinstance(ref, c.ConfidenceHist) and len(ref.counts) == len(ref.edges) - 1


def test_every_format_has_a_runtime():
    assert set(c.FORMATS) <= set(registered_formats())


def test_every_precision_has_a_golden_tolerance():
    assert set(c.PRECISIONS) == set(TOLERANCES)


def test_examples_cover_every_message_kind_and_command_type():
    from edge_agent import protocol as p

    kinds = {m.KIND for m in example_messages().values()}
    types = {m.type for m in example_messages().values() if m.KIND == p.CMD}
    assert kinds == set(p.KINDS) and types == set(p.COMMAND_TYPES)
