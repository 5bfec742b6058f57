"""``edgekit cloud publish``: a real upload to a real API server, and its one-line errors."""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from edgekit.cli.main import app as cli_app
from tests.cli import run_main
from tests.cloud_sync.api.live import LiveServer
from tests.databases import db_url, pg_admin_url  # noqa: F401 (fixtures)

TOKEN = "cli-test-token-0123456789"
runner = CliRunner()


@pytest.fixture()
def api(db_url, tmp_path, keypair, monkeypatch):  # noqa: F811
    """The cloud API on a free port over the parametrised store; env points the CLI at it."""
    from cloud_sync.api import create_app
    from cloud_sync.config import CloudConfig
    from cloud_sync.store import open_store

    cfg = CloudConfig(data_dir=tmp_path / "cloud", db=db_url, pubkeys=(keypair[1],))
    engine = open_store(cfg.db_url)
    with LiveServer(create_app(cfg, engine, api_token=TOKEN)) as server:
        monkeypatch.setenv("EDGEKIT_API", server.url)
        monkeypatch.setenv("EDGEKIT_API_TOKEN", TOKEN)
        yield server
    engine.dispose()


def test_publish_then_publish_again(api, make_onnx_bundle):
    bundle = make_onnx_bundle("1")
    first = runner.invoke(cli_app, ["cloud", "publish", str(bundle), "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["created"] and doc["name"] == "tiny" and doc["version"] == "1"
    again = runner.invoke(cli_app, ["cloud", "publish", str(bundle), "--api", api.url,
                                    "--token", TOKEN])
    assert again.exit_code == 0 and "already published" in again.stdout
    assert doc["sha256"] in again.stdout


def _tampered(bundle, out):
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data.replace(b'"tiny"', b'"tinz"') if
                         info.filename == "manifest.json" else data)
    return out


def _one_line_error(capsys, *args) -> str:
    assert run_main("cloud", "publish", *args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_refusals_are_one_line(api, make_onnx_bundle, tmp_path, capsys):
    bundle = make_onnx_bundle("1")
    err = _one_line_error(capsys, bundle, "--token", "wrong")
    assert "HTTP 401" in err and "wrong API token" in err and "--token" in err
    err = _one_line_error(capsys, _tampered(bundle, tmp_path / "t.ekb"))
    assert "HTTP 400" in err and "signature does not verify" in err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_local_problems_are_one_line(api, tmp_path, capsys, monkeypatch):
    err = _one_line_error(capsys, tmp_path / "missing.ekb")
    assert "does not exist" in err
    junk = tmp_path / "junk.ekb"
    junk.write_bytes(b"not a zip")
    assert "not an edgekit bundle" in _one_line_error(capsys, junk)
    monkeypatch.delenv("EDGEKIT_API_TOKEN")
    assert "no API token" in _one_line_error(capsys, junk)
    monkeypatch.delenv("EDGEKIT_API")
    assert "no API URL" in _one_line_error(capsys, junk, "--token", "t")
    assert "not an http" in _one_line_error(capsys, junk, "--token", "t", "--api", "ftp://x")


def test_unreachable_api_is_one_line(make_onnx_bundle, capsys):
    from edgekit.local_broker import free_port

    err = _one_line_error(capsys, make_onnx_bundle("1"), "--api",
                          f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert "cannot reach the cloud API" in err
