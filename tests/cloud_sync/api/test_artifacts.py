"""GET/HEAD /api/v1/artifacts/{sha256}: bytes by content address, Range, ETag, auth."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import pytest

from cloud_sync.registry import add_device
from cloud_sync.store import transaction
from tests.cloud_sync.api.conftest import AUTH

UNKNOWN = "ab" * 32


def _path(published) -> str:
    return f"/api/v1/artifacts/{published['sha256']}"


def test_whole_file_with_etag_and_length(client, published):
    got = client.get(_path(published), headers=AUTH)
    data = published["file"].read_bytes()
    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{published["sha256"]}"'
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header, part", [
    ("bytes=10-", slice(10, None)),
    ("bytes=0-99", slice(0, 100)),
    ("bytes=-50", slice(-50, None)),
    ("bytes=100-999999999", slice(100, None)),
])
def test_a_range_is_206_with_content_range(client, published, header, part):
    data = published["file"].read_bytes()
    got = client.get(_path(published), headers={**AUTH, "Range": header})
    want = data[part]
    first = len(data) - len(want) if header.startswith("bytes=-") else data.index(want)
    assert got.status_code == 206 and got.content == want
    assert got.headers["content-range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"
    assert got.headers["content-length"] == str(len(want))


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=5-2", "bytes=0-1,5-9",
                                    "items=0-1", "bytes=-0", "bytes=-"])
def test_a_bad_range_is_416(client, published, header):
    got = client.get(_path(published), headers={**AUTH, "Range": header})
    size = published["file"].stat().st_size
    assert got.status_code == 416 and got.headers["content-range"] == f"bytes */{size}"
    assert "error" in got.json()


def test_head_says_length_without_a_body(client, published):
    got = client.head(_path(published), headers=AUTH)
    assert got.status_code == 200 and got.content == b""
    assert got.headers["content-length"] == str(published["file"].stat().st_size)


def test_unknown_sha_is_404_and_a_malformed_one_400(client):
    missing = client.get(f"/api/v1/artifacts/{UNKNOWN}", headers=AUTH)
    assert missing.status_code == 404 and UNKNOWN in missing.json()["error"]
    bad = client.get("/api/v1/artifacts/not-a-sha", headers=AUTH)
    assert bad.status_code == 400 and "not a sha256" in bad.json()["error"]


def test_signed_url_grants_download_until_it_expires(client, app, published):
    from cloud_sync.api import sign_artifact_url

    secret = app.state.settings.url_secret
    url = urlsplit(sign_artifact_url("http://cloud:8000", published["sha256"], 60, secret))
    assert url.netloc == "cloud:8000"
    got = client.get(f"{url.path}?{url.query}")
    assert got.status_code == 200 and got.content == published["file"].read_bytes()
    old = urlsplit(sign_artifact_url("http://x", published["sha256"], 60, secret,
                                     now=time.time() - 120))
    expired = client.get(f"{old.path}?{old.query}")
    assert expired.status_code == 403 and "expired" in expired.json()["error"]


def test_forged_or_misapplied_signatures_are_403(client, app, published, make_onnx_bundle):
    from cloud_sync.api import sign_artifact_url

    secret = app.state.settings.url_secret
    good = urlsplit(sign_artifact_url("http://x", published["sha256"], 60, secret)).query
    later = int(time.time()) + 10 ** 6
    forged = good.replace(good.split("&")[0], f"expires={later}")
    for query in (forged, f"expires={later}&sig={'0' * 64}", "expires=soon&sig=x",
                  good.replace("sig=", "sig=f")):
        got = client.get(f"{_path(published)}?{query}")
        assert got.status_code == 403, query
    other = urlsplit(sign_artifact_url("http://x", UNKNOWN, 60, secret)).query
    assert client.get(f"{_path(published)}?{other}").status_code == 403
    wrong_key = urlsplit(sign_artifact_url("http://x", published["sha256"], 60,
                                           b"k" * 64)).query
    assert client.get(f"{_path(published)}?{wrong_key}").status_code == 403


def _basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_device_credentials_grant_download(client, engine, published):
    with transaction(engine) as conn:
        creds = add_device(conn, "pi-1", "lab")
    assert client.get(_path(published), headers=_basic("pi-1", creds.password)).status_code \
        == 200
    for headers in (_basic("pi-1", "wrong"), _basic("pi-9", creds.password),
                    {"Authorization": "Basic !!!"}):
        got = client.get(_path(published), headers=headers)
        assert got.status_code == 401 and "Basic" in got.headers["www-authenticate"]


def test_no_credential_is_401(client, published):
    got = client.get(_path(published))
    assert got.status_code == 401 and "Bearer" in got.json()["error"]
