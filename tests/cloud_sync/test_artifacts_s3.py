"""Artifacts in an S3-compatible store (``artifacts.backend: s3``) against a real S3 API
server (moto's server mode, its own process): publish puts the bundle in the bucket,
the API redirects downloads to a presigned URL, rollouts hand devices presigned URLs the
real agent installs from (with Range resume), and a bad bucket or endpoint fails the
start in one line."""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa

from cloud_sync.artifacts import ArtifactError, open_store
from cloud_sync.config import CloudConfig
from cloud_sync.store.schema import artifacts
from edge_agent.agent import Agent
from edge_agent.download import download
from edge_agent.errors import ConfigError
from tests.cloud_sync.api.conftest import AUTH, TOKEN, upload
from tests.edge_agent.agent_helpers import agent_config, results, update_cmd
from tests.s3 import CREDENTIALS, MotoS3


@pytest.fixture(scope="module")
def s3():
    with MotoS3() as server:
        yield server


@pytest.fixture()
def bucket(s3, monkeypatch) -> str:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    name = f"edgekit-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


def _cfg(tmp_path, db_url, keypair, s3, bucket, **over) -> CloudConfig:
    store = {"backend": "s3", "bucket": bucket, "endpoint_url": s3.url, "prefix": "prod/",
             **over}
    return CloudConfig(data_dir=tmp_path / "cloud", db=db_url, pubkeys=(keypair[1],),
                       artifacts=store)


@pytest.fixture()
def s3_app(tmp_path, db_url, engine, keypair, s3, bucket, monkeypatch):
    from cloud_sync.api import create_app

    monkeypatch.delenv("EDGEKIT_ARTIFACT_URL_SECRET", raising=False)
    cfg = _cfg(tmp_path, db_url, keypair, s3, bucket)
    return cfg, create_app(cfg, engine, api_token=TOKEN)


@pytest.fixture()
def published(s3_app, make_onnx_bundle):
    from fastapi.testclient import TestClient

    cfg, app = s3_app
    bundle = make_onnx_bundle("2", seed=1)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = upload(client, bundle)
        assert answer.status_code == 201, answer.text
        yield cfg, client, answer.json(), bundle


def test_publish_puts_the_bundle_in_the_bucket_not_on_the_host(published, s3, bucket, engine):
    cfg, _client, doc, bundle = published
    key = f"prod/{doc['sha256'][:2]}/{doc['sha256']}.ekb"
    stored = s3.client().get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == bundle.read_bytes()
    assert stored["Metadata"] == {"sha256": doc["sha256"]}
    with engine.connect() as conn:
        location = conn.execute(sa.select(artifacts.c.path)).scalar_one()
    assert location == f"s3://{bucket}/{key}"
    spool = cfg.artifacts_dir / ".incoming"
    assert list(spool.iterdir()) == []  # the upload's temp file is gone
    assert not any(p.is_file() for p in cfg.artifacts_dir.rglob("*.ekb"))


def test_api_download_redirects_to_a_presigned_url_that_honours_range(published, s3):
    _, client, doc, bundle = published
    answer = client.get(f"/api/v1/artifacts/{doc['sha256']}", headers=AUTH,
                        follow_redirects=False)
    assert answer.status_code == 307, answer.text
    url = answer.headers["location"]
    assert url.startswith(f"{s3.url}/") and "X-Amz-Signature=" in url
    data = bundle.read_bytes()
    assert httpx.get(url).content == data
    part = httpx.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == data[10:100]
    refused = client.get(f"/api/v1/artifacts/{doc['sha256']}", follow_redirects=False)
    assert refused.status_code == 401  # the redirect is given only to who may download


def test_the_agent_installs_from_the_rollouts_presigned_url(published, s3, tmp_path, keypair,
                                                            make_onnx_bundle):
    from cloud_sync.rollouts.job import artifact_signer

    cfg, _client, doc, bundle = published
    url = artifact_signer(cfg)(doc["sha256"], 600.0, None)
    assert url.startswith(f"{s3.url}/{cfg.artifacts.bucket}/prod/")
    with Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(update_cmd(url, bundle, "2", size=doc["size"]))
        result = results(agent)[-1]
        assert result["ok"] and result["detail"]["phase"] == "probation", result
        assert agent.model_info()["version"] == "2"
    data, dest = bundle.read_bytes(), tmp_path / "resumed.ekb"
    dest.with_name("resumed.ekb.part").write_bytes(data[: len(data) // 3])
    download(url, dest, max_bytes=1 << 24, timeout_s=5, retries=1, expected_size=doc["size"])
    assert dest.read_bytes() == data


def test_devices_get_urls_on_the_public_endpoint(tmp_path, db_url, keypair, s3, bucket):
    public = s3.url.replace("127.0.0.1", "localhost")
    store = open_store(_cfg(tmp_path, db_url, keypair, s3, bucket, public_endpoint_url=public))
    temp = store.incoming()
    temp.write_bytes(b"edgekit" * 100)
    sha = "ab" * 32
    store.place(temp, sha)
    url = store.presign(sha, 60)
    assert url.startswith(f"{public}/{bucket}/prod/ab/")
    assert httpx.get(url).content == b"edgekit" * 100  # the signature covers that host


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_missing_bucket_fails_the_start_in_one_line_or_is_made(tmp_path, db_url, engine,
                                                                  keypair, s3, bucket):
    from cloud_sync.api import create_app

    cfg = _cfg(tmp_path, db_url, keypair, s3, bucket + "-missing")
    with pytest.raises(ArtifactError, match=r"create it, or set artifacts\.create_bucket") as err:
        create_app(cfg, engine, api_token=TOKEN)
    assert "\n" not in str(err.value)
    made = _cfg(tmp_path, db_url, keypair, s3, bucket + "-made", create_bucket=True)
    create_app(made, engine, api_token=TOKEN)
    s3.client().head_bucket(Bucket=bucket + "-made")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unreachable_store_fails_the_start_in_one_line(tmp_path, db_url, engine, keypair,
                                                          bucket):
    from cloud_sync.api import create_app
    from edgekit.local_broker import free_port

    cfg = CloudConfig(data_dir=tmp_path / "cloud", db=db_url, pubkeys=(keypair[1],),
                      artifacts={"backend": "s3", "bucket": bucket, "timeout_s": 1,
                                 "endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ArtifactError, match=r"check artifacts\.endpoint_url") as err:
        create_app(cfg, engine, api_token=TOKEN)
    assert "\n" not in str(err.value)


def test_a_store_that_fails_mid_publish_leaves_the_registry_as_it_was(published, s3, bucket,
                                                                      engine, make_onnx_bundle):
    cfg, client, _doc, _bundle = published
    for obj in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.client().delete_object(Bucket=bucket, Key=obj["Key"])
    s3.client().delete_bucket(Bucket=bucket)
    answer = upload(client, make_onnx_bundle("3", seed=2))
    error = answer.json()["error"]
    assert answer.status_code == 503 and "NoSuchBucket" in error and "\n" not in error
    assert ".incoming" not in error  # no host paths in the answer
    assert list((cfg.artifacts_dir / ".incoming").iterdir()) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(artifacts)).scalar() == 1


def test_config_keeps_the_folder_form_and_names_bad_s3_fields(tmp_path):
    old = CloudConfig(data_dir=tmp_path, artifacts=str(tmp_path / "bundles"))
    assert old.artifacts.backend == "local" and old.artifacts_dir == tmp_path / "bundles"
    assert CloudConfig(data_dir=tmp_path).artifacts_dir == tmp_path / "artifacts"
    with pytest.raises(ConfigError, match=r"artifacts\.s3\.bucket"):
        CloudConfig.from_dict({"artifacts": {"backend": "s3"}})
    with pytest.raises(ConfigError, match=r"artifacts\.s3\.endpoint_url.*http"):
        CloudConfig.from_dict({"artifacts": {"backend": "s3", "bucket": "b-1",
                                             "endpoint_url": "minio:9000"}})
    with pytest.raises(ConfigError, match="artifacts"):
        CloudConfig.from_dict({"artifacts": {"backend": "gcs"}})
