"""Where the cloud keeps bundle files (``artifacts:`` in the cloud config).

``artifacts`` is a folder (a path, the old form, or ``{backend: local, path: ...}``;
default ``<data_dir>/artifacts``) or an S3-compatible object store::

    artifacts:
      backend: s3
      bucket: edgekit-artifacts
      prefix: prod/            # keys are <prefix><sha256[:2]>/<sha256>.ekb
      endpoint_url: http://minio.internal:9000   # leave out for AWS S3
      public_endpoint_url: https://minio.example.com  # what devices reach, if different
      region: eu-central-1

Credentials never go in the config: boto3 reads them from its usual chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PRESIGN_MAX_S = 7 * 86400  # SigV4 presigned URLs live at most 7 days


class LocalArtifacts(BaseModel):
    """A folder on this host (one serve host, or a shared file system)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["local"] = "local"
    path: Path | None = None  # None: <data_dir>/artifacts


class S3Artifacts(BaseModel):
    """An S3-compatible object store: AWS S3, MinIO, Ceph RGW, ..."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["s3"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field("", pattern=r"^([A-Za-z0-9._-]+/)*$")
    endpoint_url: str | None = None  # None: AWS S3 in ``region``
    public_endpoint_url: str | None = None  # the host in the URLs devices get (default: endpoint)
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    presign_ttl_s: int = Field(900, gt=0, le=PRESIGN_MAX_S)
    """How long the redirect of an API download (``GET /api/v1/artifacts/<sha>``) lasts;
    update commands use the rollout's ``command_ttl_s``."""
    create_bucket: bool = False  # make the bucket at start if it is missing
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("endpoint_url", "public_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value


ArtifactSettings = Annotated[LocalArtifacts | S3Artifacts, Field(discriminator="backend")]


def artifact_settings(value: Any) -> Any:
    """The config's ``artifacts`` as a mapping: a bare path (or None) means a local folder."""
    if value is None:
        return LocalArtifacts()
    if isinstance(value, (str, Path)):
        return {"backend": "local", "path": value}
    return value
