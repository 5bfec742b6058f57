"""Reading a bundle is safe against hostile files: one test per kind of trouble."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import pytest

from edge_agent.bundle import ReadLimits, open_bundle, trusted_keys
from edge_agent.errors import BundleError, SignatureError
from tests.edge_agent.bundle.conftest import MODEL_BYTES, manifest_doc, symlink_info


@pytest.fixture()
def trusted(keypair):
    return trusted_keys([keypair[1]])


def _temp_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def test_good_bundle_opens_and_extracts_into_private_folder(make_bundle, trusted):
    with open_bundle(make_bundle(), trusted, known_profiles={"rpi4"}) as opened:
        assert opened.path("model").read_bytes() == MODEL_BYTES
        assert oct(opened.folder.stat().st_mode & 0o777) == "0o700"
        folder = opened.folder
    assert not folder.exists()


@pytest.mark.parametrize("name, message", [
    ("../evil.onnx", "path traversal"),
    ("sub/../../evil.onnx", "path traversal"),
    ("/etc/evil.onnx", "absolute path"),
    ("C:/evil.onnx", "absolute path"),
    ("sub/dir.onnx", "plain top-level file"),
    ("sub\\dir.onnx", "plain top-level file"),
])
def test_hostile_member_names_are_rejected(make_bundle, trusted, name, message, tmp_path):
    bundle = make_bundle(extra_members=[(name, b"x")])
    before = _temp_entries()
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle, trusted)
    assert _temp_entries() == before  # nothing written anywhere
    assert not (tmp_path.parent / "evil.onnx").exists()


def test_symlink_member_is_rejected(make_bundle, trusted):
    bundle = make_bundle(extra_members=[(symlink_info("link.onnx"), b"/etc/passwd")])
    with pytest.raises(BundleError, match="symbolic link"):
        open_bundle(bundle, trusted)


def test_duplicate_member_names_are_rejected(make_bundle, trusted):
    with pytest.warns(UserWarning, match="Duplicate name"):
        bundle = make_bundle(extra_members=[("model.onnx", b"second copy")])
    with pytest.raises(BundleError, match="appears twice"):
        open_bundle(bundle, trusted)


def test_oversize_member_is_rejected(make_bundle, trusted):
    big = b"\x01" * 4096
    bundle = make_bundle(payloads={"model.onnx": big})
    with pytest.raises(BundleError, match="per-file cap"):
        open_bundle(bundle, trusted, limits=ReadLimits(max_member_bytes=1024))


def test_highly_compressed_member_is_rejected_as_zip_bomb(make_bundle, trusted):
    bomb = b"\x00" * (8 << 20)  # 8 MiB of zeros deflates about 1000:1
    bundle = make_bundle(payloads={"model.onnx": bomb})
    with pytest.raises(BundleError, match="zip bomb"):
        open_bundle(bundle, trusted)


def test_too_many_members_are_rejected(make_bundle, trusted):
    extra = [(f"f{i}.bin", b"x") for i in range(40)]
    with pytest.raises(BundleError, match="members"):
        open_bundle(make_bundle(extra_members=extra), trusted)


def test_missing_payload_file_is_rejected(make_bundle, trusted):
    bundle = make_bundle(payloads={"model.onnx": MODEL_BYTES}, payload_override={})
    with pytest.raises(BundleError, match=r"missing payload file 'model\.onnx'"):
        open_bundle(bundle, trusted)


def test_extra_payload_file_is_rejected(make_bundle, trusted):
    bundle = make_bundle(extra_members=[("surprise.bin", b"x")])
    with pytest.raises(BundleError, match="does not list"):
        open_bundle(bundle, trusted)


def test_hash_mismatch_is_rejected(make_bundle, trusted):
    evil = bytes(reversed(MODEL_BYTES))  # same size, other content
    bundle = make_bundle(payload_override={"model.onnx": evil})
    with pytest.raises(BundleError, match="sha256"):
        open_bundle(bundle, trusted)


def test_size_mismatch_is_rejected(make_bundle, trusted):
    bundle = make_bundle(payload_override={"model.onnx": MODEL_BYTES + b"more"})
    with pytest.raises(BundleError, match="differs from the manifest"):
        open_bundle(bundle, trusted)


def test_unsigned_bundle_is_rejected(make_bundle, trusted):
    with pytest.raises(SignatureError, match="unsigned"):
        open_bundle(make_bundle(sign=False), trusted)


def test_tampered_manifest_is_rejected(make_bundle, trusted):
    bundle = make_bundle(tamper=lambda b: b.replace(b'"3"', b'"9"'))
    with pytest.raises(SignatureError, match="tampered"):
        open_bundle(bundle, trusted)


def test_bundle_signed_by_untrusted_key_is_rejected(make_bundle, trusted, other_keypair):
    from edge_agent.bundle import load_private_key

    bundle = make_bundle(key=load_private_key(other_keypair[0]))
    with pytest.raises(SignatureError, match="not trusted"):
        open_bundle(bundle, trusted)


@pytest.mark.parametrize("version", [99, "2.0", "0.9"])
def test_unknown_schema_major_is_rejected(make_bundle, trusted, version):
    doc = manifest_doc({"model.onnx": MODEL_BYTES})
    doc["schema_version"] = version
    with pytest.raises(BundleError, match=r"schema_version \d+\.\d+ is not supported .*1\.x"):
        open_bundle(make_bundle(doc=doc), trusted)


@pytest.mark.parametrize("version", ["1", "1.x", "v1.1", True, None, 1.5])
def test_malformed_schema_version_is_rejected(make_bundle, trusted, version):
    doc = manifest_doc({"model.onnx": MODEL_BYTES})
    doc["schema_version"] = version
    with pytest.raises(BundleError, match="schema_version"):
        open_bundle(make_bundle(doc=doc), trusted)


def test_first_release_integer_schema_version_still_reads(make_bundle, trusted):
    doc = manifest_doc({"model.onnx": MODEL_BYTES})
    doc.update(schema_version=1, metrics={}, lineage={}, reference_stats={}, preprocessing={})
    with open_bundle(make_bundle(doc=doc), trusted) as opened:
        assert opened.manifest.schema_version == "1.0"
        assert opened.manifest.reference_stats.input is None
        assert json.loads(opened.manifest.to_json())["schema_version"] == "1.2"


def test_unknown_profile_is_rejected(make_bundle, trusted):
    with pytest.raises(BundleError, match="profile 'rpi4', which does not exist"):
        open_bundle(make_bundle(), trusted, known_profiles={"x86-64"})


def test_manifest_path_payload_names_are_rejected(make_bundle, trusted):
    doc = manifest_doc({"model.onnx": MODEL_BYTES})
    doc["files"]["model"]["path"] = "../model.onnx"
    with pytest.raises(BundleError, match="plain file name"):
        open_bundle(make_bundle(doc=doc), trusted)


def test_not_a_zip_is_rejected(tmp_path, trusted):
    path = tmp_path / "junk.ekb"
    path.write_bytes(b"hello")
    with pytest.raises(BundleError, match="not a readable zip"):
        open_bundle(path, trusted)


def test_missing_manifest_is_rejected(tmp_path, trusted):
    path = tmp_path / "empty.ekb"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.onnx", b"x")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        open_bundle(path, trusted)


def test_malformed_manifest_field_names_the_field(make_bundle, trusted):
    doc = manifest_doc({"model.onnx": MODEL_BYTES})
    doc["inputs"][0]["dtype"] = "complex128"
    with pytest.raises(BundleError, match=r"inputs\[0\]\.dtype"):
        open_bundle(make_bundle(doc=doc), trusted)


def test_no_trusted_key_is_a_clear_error(make_bundle):
    with pytest.raises(SignatureError, match="--pubkey"):
        open_bundle(make_bundle(), {})


def test_failed_extraction_leaves_nothing_behind(make_bundle, trusted, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    bundle = make_bundle(payload_override={"model.onnx": bytes(reversed(MODEL_BYTES))})
    with pytest.raises(BundleError):
        open_bundle(bundle, trusted, workdir=work)
    assert list(work.iterdir()) == []


def test_manifest_round_trips(make_bundle, trusted):
    with open_bundle(make_bundle(), trusted) as opened:
        again = type(opened.manifest).from_json(opened.manifest.to_json())
        assert again == opened.manifest
        assert json.loads(opened.manifest.to_json())["model"]["version"] == "3"


def test_sign_bad_key_file_is_clear(tmp_path: Path):
    from edge_agent.bundle import load_private_key

    bad = tmp_path / "k.pem"
    bad.write_text("nope")
    with pytest.raises(SignatureError, match="not an unencrypted PEM private key"):
        load_private_key(bad)
