"""POST /api/v1/models: verify, store by sha256, register; refusals store nothing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloud_sync.store import transaction
from cloud_sync.store.schema import artifacts, bundles, models
from edge_agent.bundle.archive import file_digest
from tests.cloud_sync.api.conftest import AUTH, UPLOAD_CAP, upload


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (models, bundles, artifacts))


def _stored_files(cloud_cfg) -> list[Path]:
    root = cloud_cfg.artifacts_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_publish_stores_by_sha256_and_registers_the_version(client, published, cloud_cfg):
    sha, size = file_digest(published["file"])
    assert (published["sha256"], published["size"]) == (sha, size)
    assert published["name"] == "tiny" and published["version"] == "1"
    assert published["profile"] == "x86-64" and published["key_id"]
    stored = cloud_cfg.artifacts_dir / sha[:2] / f"{sha}.ekb"
    assert _stored_files(cloud_cfg) == [stored]
    assert stored.read_bytes() == published["file"].read_bytes()
    versions = client.get("/api/v1/models/tiny/versions", headers=AUTH).json()
    assert [v["version"] for v in versions] == ["1"] and versions[0]["profiles"] == ["x86-64"]
    bundle = versions[0]["bundles"][0]
    assert bundle["url"] == f"/api/v1/artifacts/{sha}" and "path" not in bundle
    assert bundle["manifest"]["model"]["name"] == "tiny"
    assert {"metrics", "lineage"} <= set(versions[0])
    one = client.get("/api/v1/models/tiny/versions/1", headers=AUTH).json()
    assert one["bundles"][0]["sha256"] == sha


def test_same_bundle_again_is_200_and_changes_nothing(client, published, engine, cloud_cfg):
    before = _counts(engine)
    again = upload(client, published["file"])
    assert again.status_code == 200 and again.json()["created"] is False
    assert _counts(engine) == before and len(_stored_files(cloud_cfg)) == 1


def test_models_list_summarises_names(client, published, make_onnx_bundle):
    assert upload(client, make_onnx_bundle("2", seed=1)).status_code == 201
    listed = client.get("/api/v1/models", headers=AUTH).json()
    assert listed == [{"name": "tiny", "versions": 2, "latest_version": "2",
                       "latest_published_at": listed[0]["latest_published_at"],
                       "profiles": ["x86-64"]}]


def test_conflicting_bundle_for_a_published_version_is_409(client, published, engine,
                                                           make_onnx_bundle, cloud_cfg):
    before = _counts(engine)
    other = upload(client, make_onnx_bundle("1", seed=7))
    assert other.status_code == 409 and "publish it as a new version" in other.json()["error"]
    assert _counts(engine) == before and len(_stored_files(cloud_cfg)) == 1


def _tampered(bundle: Path, out: Path) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                data = data.replace(b'"tiny"', b'"tinz"')
            dst.writestr(info, data)
    return out


def _garbage(_bundle: Path, out: Path) -> Path:
    out.write_bytes(b"this is not a zip archive at all")
    return out


@pytest.mark.parametrize("spoil, message", [
    (_tampered, "signature does not verify"),
    (_garbage, "not an edgekit bundle"),
])
def test_a_bad_bundle_is_400_and_nothing_is_stored(client, engine, cloud_cfg, make_onnx_bundle,
                                                   tmp_path, spoil, message):
    answer = upload(client, spoil(make_onnx_bundle("1"), tmp_path / "bad.ekb"))
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert _counts(engine) == (0, 0, 0) and _stored_files(cloud_cfg) == []


def test_a_bundle_signed_by_an_untrusted_key_is_400(client, engine, make_onnx_bundle,
                                                    other_keypair):
    answer = upload(client, make_onnx_bundle("1", key=other_keypair[0]))
    assert answer.status_code == 400 and "not trusted here" in answer.json()["error"]
    assert _counts(engine) == (0, 0, 0)


def test_oversize_upload_is_413_before_and_while_streaming(client, engine, cloud_cfg):
    big = b"x" * (UPLOAD_CAP + 1)
    declared = client.post("/api/v1/models", content=big, headers=AUTH)
    assert declared.status_code == 413 and "cap" in declared.json()["error"]

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(5):
            yield b"x" * (1 << 20)

    streamed = client.post("/api/v1/models", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    assert _counts(engine) == (0, 0, 0) and _stored_files(cloud_cfg) == []


@pytest.mark.parametrize("headers, body, status, message", [
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 415, "raw request body"),
    ({}, b"", 400, "empty upload"),
])
def test_odd_bodies_get_one_line(client, headers, body, status, message):
    answer = client.post("/api/v1/models", content=body, headers={**AUTH, **headers})
    assert answer.status_code == status and message in answer.json()["error"]


def test_without_trusted_keys_publishing_is_503(client, app, make_onnx_bundle, engine):
    import dataclasses

    app.state.settings = dataclasses.replace(app.state.settings, pubkeys=())
    answer = upload(client, make_onnx_bundle("1"))
    assert answer.status_code == 503 and "trusts no signing key" in answer.json()["error"]
    assert _counts(engine) == (0, 0, 0)


def test_unknown_model_and_version_are_404(client, published):
    assert client.get("/api/v1/models/nope/versions", headers=AUTH).status_code == 404
    missing = client.get("/api/v1/models/tiny/versions/9", headers=AUTH)
    assert missing.status_code == 404 and "no version '9'" in missing.json()["error"]


def test_publish_outcomes_are_counted(client, published, make_onnx_bundle):
    upload(client, published["file"])
    upload(client, make_onnx_bundle("1", seed=7))
    text = client.get("/metrics").text
    for outcome in ("created", "duplicate", "conflict"):
        assert f'edgekit_api_publishes_total{{outcome="{outcome}"}} 1.0' in text



def test_a_publish_racing_another_of_the_same_bundle_ends_as_a_duplicate(
        app, engine, make_onnx_bundle):
    """The other publish holds the version's rows uncommitted; ours waits on them (row lock
    on PostgreSQL, write lock on SQLite), then finds the bundle there: 200, one version."""
    import threading

    from cloud_sync.publishing import publish_file
    from cloud_sync.registry import register_bundle
    from edge_agent.bundle import read_manifest_unverified

    bundle = make_onnx_bundle("5")
    sha, size = file_digest(bundle)
    settings, outcome = app.state.settings, {}
    temp = settings.artifacts.incoming()
    temp.write_bytes(bundle.read_bytes())

    def ours() -> None:
        outcome["published"] = publish_file(engine, settings.artifacts, settings.pubkeys, temp,
                                            sha, size)

    racer = threading.Thread(target=ours)
    with transaction(engine) as conn:
        register_bundle(conn, read_manifest_unverified(bundle), sha, size,
                        settings.artifacts.place(_copy(bundle), sha))
        racer.start()
        racer.join(timeout=0.5)  # blocked behind this open transaction
        assert racer.is_alive()
    racer.join(timeout=30)
    assert outcome["published"].created is False and _counts(engine) == (1, 1, 1)


def _copy(bundle: Path) -> Path:
    copy = bundle.with_name(f"copy-{bundle.name}")
    copy.write_bytes(bundle.read_bytes())
    return copy
