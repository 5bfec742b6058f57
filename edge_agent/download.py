"""Fetching a bundle over HTTP(S): size-capped, resumable, with a timeout on every wait."""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from edge_agent.bundle.archive import CHUNK
from edge_agent.errors import EdgekitError

log = logging.getLogger(__name__)


class DownloadError(EdgekitError):
    """A bundle could not be fetched within its limits."""


def download(url: str, dest: Path, max_bytes: int, timeout_s: float, retries: int = 5,
             expected_size: int | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    Refuses anything but http(s), anything over ``max_bytes`` (or over the
    announced ``expected_size``), and gives up after ``retries`` failed attempts.
    """
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"refusing to download {url!r}: only http:// and https:// are allowed")
    cap = min(max_bytes, expected_size) if expected_size is not None else max_bytes
    partial = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, partial, cap, timeout_s)
            os.replace(str(partial), str(dest))
            return dest
        except DownloadError:
            partial.unlink(missing_ok=True)
            raise
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            log.warning("download attempt %d/%d of %s failed: %s", attempt, retries, url, exc)
            if attempt == retries:
                raise DownloadError(f"download of {url} failed after {retries} attempts: {exc}") \
                    from exc
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
    raise DownloadError(f"download of {url} failed")  # pragma: no cover - loop always returns


def _fetch(url: str, partial: Path, cap: int, timeout_s: float) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        if length is not None and have + int(length) > cap:
            raise DownloadError(f"bundle is {have + int(length)} bytes; the cap is {cap}")
        with open(partial, "ab" if have else "wb") as out:
            total = have
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    raise DownloadError(f"bundle is over the cap of {cap} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if length is not None and total < have + int(length):
            # the connection ended early: keep the partial file and resume from it
            raise http.client.IncompleteRead(b"", have + int(length) - total)
