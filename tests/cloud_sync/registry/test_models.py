"""The model registry: versions, one bundle per profile, content-addressed artifacts."""

from __future__ import annotations

import dataclasses

import pytest

from cloud_sync.errors import RegistryError
from cloud_sync.registry import get_model, list_models, register_bundle
from cloud_sync.store import transaction
from edge_agent.bundle import read_manifest_unverified
from edge_agent.bundle.archive import file_digest


@pytest.fixture(scope="module")
def manifest_and_file(make_onnx_bundle):
    path = make_onnx_bundle(version="3")
    sha, size = file_digest(path)
    return read_manifest_unverified(path), sha, size, path


def test_register_bundle_records_version_bundle_and_artifact(engine, manifest_and_file):
    manifest, sha, size, path = manifest_and_file
    with transaction(engine) as conn:
        record = register_bundle(conn, manifest, sha, size, path, now=50.0)
        again = register_bundle(conn, manifest, sha, size, path, now=60.0)  # idempotent
    assert record == again and record.profile == manifest.profile
    with engine.connect() as conn:
        model = get_model(conn, manifest.model.name, "3")
        assert [m.version for m in list_models(conn)] == ["3"]
        assert get_model(conn, manifest.model.name, "4") is None
    assert model.published_at == 50.0 and model.metrics == manifest.to_dict()["metrics"]
    assert [(b.sha256, b.size, b.path) for b in model.bundles] == [(sha, size, str(path))]
    assert model.bundles[0].manifest["model"]["version"] == "3"


def test_a_version_is_immutable(engine, manifest_and_file):
    manifest, sha, size, path = manifest_and_file
    with transaction(engine) as conn:
        register_bundle(conn, manifest, sha, size, path)
    with pytest.raises(RegistryError, match="already published with a different bundle"), \
            transaction(engine) as conn:
        register_bundle(conn, manifest, "0" * 64, size, path)


def test_each_profile_has_its_own_bundle(engine, manifest_and_file):
    manifest, sha, size, path = manifest_and_file
    other = dataclasses.replace(manifest, profile="rpi4")
    with transaction(engine) as conn:
        register_bundle(conn, manifest, sha, size, path)
        register_bundle(conn, other, "f" * 64, 10, path)
        model = get_model(conn, manifest.model.name, "3")
    assert sorted(b.profile for b in model.bundles) == sorted(["rpi4", manifest.profile])
