"""docs/protocol.md is generated from the contracts' dataclasses and must be current."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edge_agent import protocol as p
from edge_agent.bundle.manifest import Manifest
from edge_agent.contracts import ReferenceStats
from edge_agent.contracts.examples import main, render
from edge_agent.contracts.reference import DetectionReference
from edge_agent.contracts.task import Task

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_protocol_doc_is_generated_from_the_code():
    assert DOC.read_text(encoding="utf-8") == render(), \
        "docs/protocol.md is stale: run .venv/bin/python -m edge_agent.contracts.examples"


def test_every_documented_example_parses_as_what_it_claims():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"### (.+?)\n\n.*?```json\n(.*?)\n```", text, re.S)
    for title, body in blocks:
        doc = json.loads(body)
        if title == "reference_stats":
            ReferenceStats.from_dict(doc)
        elif title == "manifest.json":
            Manifest.from_dict(doc)
        elif title == "task (detection)":
            Task.from_dict(doc)
        elif title == "reference_stats.detection":
            DetectionReference.from_dict(doc)
        else:
            message = p.decode(title.split(" ")[0], json.dumps(doc).encode())
            assert title.startswith(message.KIND)
    assert {t.split(" ")[0] for t, _ in blocks} == {*p.KINDS, "reference_stats", "manifest.json",
                                                    "task", "reference_stats.detection"}


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "protocol.md"
    stale.write_text("old")
    assert main([str(stale), "--check"]) == 1 and "stale" in capsys.readouterr().out
    assert main([str(stale)]) == 0 and main([str(stale), "--check"]) == 0
