"""Artifacts in an S3-compatible object store (``artifacts.backend: s3``), through boto3.

Keys are ``<prefix><sha256[:2]>/<sha256>.ekb``, like the local folder's paths. An upload
is spooled to a local temp file (the API verifies the bundle's signature there), then
put under its content address; S3 makes an object visible only once it is whole, so a
reader never sees half a file, and two uploads of the same content write the same bytes.
Devices download through presigned GET URLs (SigV4, at most 7 days), which carry
Range requests, so an agent's interrupted download resumes as it does from the API.

The client is made once and shared by threads (boto3 clients are thread-safe). It asks
for request checksums only where S3 requires them: MinIO and Ceph RGW releases that
predate S3's default CRC32 checksums refuse them otherwise.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sync.artifact_settings import S3Artifacts
from cloud_sync.artifacts import SUFFIX, ArtifactError, is_sha256

MEDIA_TYPE = "application/octet-stream"


class ArtifactStoreError(ArtifactError):
    """The object store refused or could not be reached (the API answers 503: retry)."""


def _why(exc: BaseException) -> str:
    """One line from a boto3/botocore error (the S3 error code and message where the
    store answered, e.g. through s3transfer's wrapper of it)."""
    seen: BaseException | None = exc
    while seen is not None:
        err = (getattr(seen, "response", None) or {}).get("Error") or {}
        if err:
            return f"{err.get('Code', '?')}: {err.get('Message') or 'no message'}"
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class S3ArtifactStore:
    """The bucket: content addresses, uploads from a spool folder, presigned URLs."""

    settings: S3Artifacts
    spool: Path
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _client(self, public: bool = False) -> Any:
        endpoint = self.settings.endpoint_url
        if public and self.settings.public_endpoint_url:
            endpoint = self.settings.public_endpoint_url
        with self._lock:
            if endpoint not in self._clients:
                import boto3
                from botocore.config import Config

                config = Config(signature_version="s3v4", connect_timeout=self.settings.timeout_s,
                                read_timeout=self.settings.timeout_s,
                                retries={"max_attempts": 5, "mode": "standard"},
                                s3={"addressing_style": self.settings.addressing_style},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required")
                self._clients[endpoint] = boto3.session.Session().client(
                    "s3", endpoint_url=endpoint, region_name=self.settings.region, config=config)
            return self._clients[endpoint]

    def key_for(self, sha256: str) -> str:
        """The object key of the artifact with this sha256."""
        if not is_sha256(sha256):
            raise ArtifactError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return f"{self.settings.prefix}{sha256[:2]}/{sha256}{SUFFIX}"

    def location(self, sha256: str) -> str:
        """What the registry records: ``s3://<bucket>/<key>``."""
        return f"s3://{self.settings.bucket}/{self.key_for(sha256)}"

    def incoming(self) -> Path:
        """A fresh empty local temp file for an upload (verified there, then put)."""
        self.spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=SUFFIX, dir=self.spool)
        os.close(fd)
        return Path(name)

    def place(self, temp: Path, sha256: str) -> str:
        """Put a verified temp file under its content address, check the stored size, and
        remove the temp file; its location. Putting the same bytes again heals a damaged
        object."""
        key, size = self.key_for(sha256), temp.stat().st_size
        try:
            client = self._client()
            client.upload_file(str(temp), self.settings.bucket, key, ExtraArgs={
                "ContentType": MEDIA_TYPE, "Metadata": {"sha256": sha256}})
            stored = client.head_object(Bucket=self.settings.bucket, Key=key)["ContentLength"]
        except Exception as exc:  # botocore/boto3/s3transfer errors share no base class
            raise ArtifactStoreError(f"cannot store artifact {sha256[:12]}… in bucket "
                                f"{self.settings.bucket!r}: {_why(exc)}") from None
        if stored != size:
            raise ArtifactStoreError(f"bucket {self.settings.bucket!r} holds {stored} bytes for "
                                f"artifact {sha256[:12]}…, not {size}; publish it again")
        temp.unlink(missing_ok=True)
        return self.location(sha256)

    def presign(self, sha256: str, ttl_s: float | None = None) -> str:
        """A GET URL for this artifact that works for ``ttl_s`` seconds (default
        ``presign_ttl_s``; at most 7 days), on the endpoint devices reach. Signed here:
        no request to the store."""
        ttl_s = self.settings.presign_ttl_s if ttl_s is None else ttl_s
        if ttl_s <= 0:
            raise ArtifactError(f"presigned URL lifetime must be > 0 seconds, got {ttl_s}")
        from cloud_sync.artifact_settings import PRESIGN_MAX_S

        return self._client(public=True).generate_presigned_url(
            "get_object", Params={"Bucket": self.settings.bucket, "Key": self.key_for(sha256)},
            ExpiresIn=int(min(max(ttl_s, 1), PRESIGN_MAX_S)))

    def check(self) -> None:
        """Fail fast, in one line, when the bucket cannot be reached (or make it when
        ``create_bucket`` says so)."""
        bucket, client = self.settings.bucket, self._client()
        try:
            client.head_bucket(Bucket=bucket)
            return
        except Exception as exc:
            code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket") or not self.settings.create_bucket:
                where = self.settings.endpoint_url or "AWS S3"
                hint = ("create it, or set artifacts.create_bucket: true"
                        if code in ("404", "NoSuchBucket") else
                        "check artifacts.endpoint_url and the AWS_* credentials")
                raise ArtifactStoreError(f"artifact bucket {bucket!r} at {where}: {_why(exc)}; "
                                    f"{hint}") from None
        try:
            extra = ({"CreateBucketConfiguration": {"LocationConstraint": self.settings.region}}
                     if self.settings.region and self.settings.region != "us-east-1" else {})
            client.create_bucket(Bucket=bucket, **extra)
        except Exception as exc:
            raise ArtifactStoreError(f"cannot create artifact bucket {bucket!r}: {_why(exc)}") \
                from None
