"""Contracts that grow: a newer minor is read (unknown fields skipped and counted), an
unknown major is refused in one line, and an agent of today installs a newer-minor bundle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from edge_agent import protocol as p
from edge_agent.bundle import load_private_key, open_bundle, trusted_keys
from edge_agent.bundle.manifest import SCHEMA_VERSION, Manifest
from edge_agent.bundle.signing import sign_manifest
from edge_agent.contracts import reset_unknown_field_counts, unknown_field_counts
from edge_agent.contracts.examples import example_manifest, example_messages
from edge_agent.errors import BundleError, ProtocolError

NEWER_PROTOCOL = f"{p.PROTOCOL_VERSION.major}.{p.PROTOCOL_VERSION.minor + 1}"
NEWER_SCHEMA = f"{SCHEMA_VERSION.major}.{SCHEMA_VERSION.minor + 1}"


@pytest.fixture(autouse=True)
def _fresh_counts():
    reset_unknown_field_counts()
    yield
    reset_unknown_field_counts()


NESTED = {"telemetry": "system", "samples": "prediction", "status": "model",
          "cmd (update)": "args", "cmd (set-config)": "args", "manifest": "lineage"}


def _grown(doc: dict, title: str) -> dict:
    """``doc`` as a newer minor could write it: an extra optional field, and one inside
    a typed block where the message has one."""
    doc = json.loads(json.dumps(doc))
    doc["added_later"] = {"any": ["shape"]}
    if title in NESTED:
        doc[NESTED[title]]["added_later_too"] = 1
    return doc


@pytest.mark.parametrize("title", list(example_messages()))
def test_a_reader_of_today_reads_a_newer_minor_message(title):
    message = example_messages()[title]
    doc = _grown(message.to_dict(), title)
    doc["v"] = NEWER_PROTOCOL
    read = p.decode(message.KIND, json.dumps(doc).encode())
    assert read == message  # every known field as sent; the new ones skipped
    nested = [f"{NESTED[title]}.added_later_too"] if title in NESTED else []
    assert sorted(read.unknown_fields) == sorted(["added_later", *nested])
    assert unknown_field_counts()[f"{message.KIND}:added_later"] == 1


def test_unknown_fields_of_the_same_minor_are_an_error():
    doc = _grown(example_messages()["telemetry"].to_dict(), "telemetry")
    with pytest.raises(ProtocolError, match="unknown field"):
        p.Telemetry.from_dict(doc)
    assert unknown_field_counts() == {}


def test_a_newer_minor_command_may_carry_new_args():
    cmd = example_messages()["cmd (update)"]
    doc = dict(cmd.to_dict(), v=NEWER_PROTOCOL)
    doc["args"] = dict(doc["args"], delta_from="3")
    read = p.Command.from_dict(doc)
    assert read.args == cmd.args and read.unknown_fields == ("args.delta_from",)
    assert read.typed_args().version == "4"


@pytest.mark.parametrize("v", ["2.0", 2, "0.3", "9.1"])
def test_an_unknown_protocol_major_is_refused_in_one_line(v):
    doc = dict(example_messages()["status"].to_dict(), v=v)
    with pytest.raises(ProtocolError, match=r"not supported .*reads 1\.x") as info:
        p.Status.from_dict(doc)
    assert "\n" not in str(info.value)


def test_first_release_integer_version_still_reads():
    doc = dict(example_messages()["cmd (ping)"].to_dict(), v=1)
    assert p.Command.from_dict(doc).type == "ping"


def test_writers_are_strict():
    message = example_messages()["status"]
    message.detail = {"fine": "free-form"}
    message.state = "sleeping"
    with pytest.raises(ProtocolError, match="field 'state' must be one of"):
        message.to_json()


def test_a_reader_of_today_reads_a_newer_minor_manifest():
    doc = _grown(example_manifest().to_dict(), "manifest")
    doc["schema_version"] = NEWER_SCHEMA
    doc["reference_stats"]["output"]["calibration_entropy"] = 0.3
    read = Manifest.from_dict(doc)
    assert read == example_manifest() and read.schema_version == NEWER_SCHEMA
    assert set(read.unknown_fields) >= {"added_later", "reference_stats.output.calibration_entropy"}
    assert unknown_field_counts()["manifest:added_later"] == 1
    assert json.loads(read.to_json())["schema_version"] == str(SCHEMA_VERSION)
    with pytest.raises(BundleError, match="unknown field"):
        Manifest.from_dict(dict(doc, schema_version=str(SCHEMA_VERSION)))


def test_an_unknown_manifest_major_is_refused_in_one_line():
    doc = dict(example_manifest().to_dict(), schema_version="2.0")
    with pytest.raises(BundleError, match=r"schema_version 2\.0 is not supported") as info:
        Manifest.from_dict(doc)
    assert "\n" not in str(info.value)


def _rebuilt_as_newer_minor(bundle: Path, key_file: Path, out: Path) -> Path:
    """The same signed bundle, as a newer minor's build would write it (re-signed)."""
    with zipfile.ZipFile(bundle) as src:
        doc = json.loads(src.read("manifest.json"))
        doc.update(schema_version=NEWER_SCHEMA, energy_mj_per_inference=0.8)
        doc["target"]["npu_cores"] = 2
        doc["metrics"]["energy_mj"] = 0.8
        manifest = json.dumps(doc, sort_keys=True, indent=1).encode()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            dst.writestr("manifest.json", manifest)
            dst.writestr("manifest.sig", sign_manifest(manifest, load_private_key(key_file)))
            for name in src.namelist():
                if name not in ("manifest.json", "manifest.sig"):
                    dst.writestr(name, src.read(name))
    return out


def test_an_agent_of_today_installs_a_bundle_built_by_a_newer_minor(
        tmp_path, keypair, make_onnx_bundle, rng):
    from edge_agent.agent import Agent
    from tests.edge_agent.agent_helpers import agent_config, messages

    newer = _rebuilt_as_newer_minor(make_onnx_bundle(version="5"), keypair[0],
                                    tmp_path / "newer.ekb")
    with open_bundle(newer, trusted_keys([keypair[1]])) as opened:
        assert set(opened.manifest.unknown_fields) == {
            "energy_mj_per_inference", "target.npu_cores", "metrics.energy_mj"}
    with Agent(agent_config(tmp_path / "state", keypair[1], bundle=newer)) as agent:
        assert agent.active.record.version == "5"
        spec = agent.active.bundle.manifest.inputs[0].shape
        x = rng.standard_normal([d or 1 for d in spec]).astype("float32")
        assert agent.predict(x)[0].shape[0] == 1
        agent.telemetry_tick()
        (telemetry,) = messages(agent, p.TELEMETRY)
        assert telemetry["model"]["version"] == "5" and telemetry["inferences"] == 1
    assert unknown_field_counts()["manifest:target.npu_cores"] >= 1
