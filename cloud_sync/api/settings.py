"""What the HTTP API needs at run time, resolved once from the cloud config and the environment.

The API token is, in order: ``create_app(..., api_token=...)``, the config's
``api_token`` (when the config has that field), ``$EDGEKIT_API_TOKEN``. Without one,
every request that needs it is refused with a 401 that says how to set it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_sync.artifacts import load_url_secret, open_store
from cloud_sync.config import CloudConfig

TOKEN_ENV = "EDGEKIT_API_TOKEN"
DEFAULT_MAX_UPLOAD = 512 << 20  # the agent's default download cap
MIN_TOKEN_CHARS = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    """The API's typed settings (on ``app.state.settings``)."""

    token: str | None
    artifacts: Any  # ArtifactStore (a folder) or S3ArtifactStore
    url_secret: bytes
    pubkeys: tuple[Path, ...]
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD

    @classmethod
    def resolve(cls, cfg: CloudConfig, api_token: str | None = None,
                max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> ApiSettings:
        """Settings from the config, an explicit token (else config/env) and limits."""
        token = api_token or getattr(cfg, "api_token", None) or os.environ.get(TOKEN_ENV)
        if not token:
            log.warning("no API token: set %s; token-protected requests get 401", TOKEN_ENV)
        elif len(token) < MIN_TOKEN_CHARS:
            log.warning("the API token has fewer than %d characters; use a longer random one",
                        MIN_TOKEN_CHARS)
        store = open_store(cfg)
        store.check()  # an unreachable bucket fails the start, in one line
        return cls(token=token or None, artifacts=store,
                   url_secret=load_url_secret(cfg.data_dir), pubkeys=tuple(cfg.pubkeys),
                   max_upload_bytes=max_upload_bytes)
