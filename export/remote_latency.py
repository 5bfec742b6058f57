"""Latency of exported files measured on a real device: each file goes to a running agent's
``POST /v1/measure`` (``edge_agent.measure`` describes the request), which loads it in a
runtime instance of its own, beside the model it serves, and times it there.

Same contract as ``export.latency.benchmark``: ``{timing.key: ms}``, the best round's median
of batch-1 runs after a warm-up. The rounds run on the device, one file after the other
(the agent times one file per request, one request at a time). Every failure is one
``RemoteLatencyError`` line that says what to do.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Hashable
from typing import Any

import numpy as np

from compress import progress
from edge_agent.measure import CONTENT_TYPE, MeasureRequest, encode_request
from export.errors import ExportError
from export.latency import Timing

INFO_TIMEOUT_S = 10.0
BUSY_RETRY_S = 60.0  # how long to wait for another build's measurement to finish
_ENVELOPE_BYTES = 1 << 12  # .npz headers and the JSON request around the file and sample


class RemoteLatencyError(ExportError):
    """The agent could not be reached or refused to measure a file."""


def _base(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise RemoteLatencyError(f"agent URL {url!r} must look like http://HOST:PORT "
                                 "(the address given to 'edgekit agent run --http')")
    return url.rstrip("/")


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("error") or exc.reason)
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)


_STATUS_HINTS = {
    401: "the agent at {url} refused the token (401): pass the agent's http_token "
         "(or set it on the agent with --http-token-file / $EDGEKIT_AGENT_TOKEN)",
    403: "the agent at {url} has measuring disabled: set 'measure: true' in its config",
    404: "the agent at {url} has no /v1/measure endpoint: upgrade it to an edgekit agent "
         "that can measure",
    409: "the agent at {url} is on probation with a new model and will not measure "
         "until it commits; retry in a few minutes",
    413: "the agent at {url} refused {what}: {error}; raise its 'measure_max_bytes'",
    429: "the agent at {url} stayed busy with another measurement for {busy:.0f} s; "
         "retry when it is done",
}


def _call(url: str, token: str | None, path: str, body: bytes | None = None,
          timeout: float = INFO_TIMEOUT_S, what: str = "the request") -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = CONTENT_TYPE
    req = urllib.request.Request(url + path, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        error = _error_text(exc)
        hint = _STATUS_HINTS.get(exc.code, "the agent at {url} could not measure {what} "
                                           "(HTTP {code}): {error}")
        raise RemoteLatencyError(hint.format(url=url, what=what, code=exc.code, error=error,
                                             busy=BUSY_RETRY_S)) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteLatencyError(f"cannot reach the agent at {url}: {reason}; start it with "
                                 "'edgekit agent run --http HOST:PORT' and check the URL") from exc
    except ValueError as exc:
        raise RemoteLatencyError(f"the agent at {url} answered something that is not JSON; "
                                 "is that URL an edgekit agent?") from exc


def agent_info(url: str, token: str | None) -> dict[str, Any]:
    """The agent's ``GET /v1/measure``: enabled, limits, device (id, profile, arch, cpus)."""
    base = _base(url)
    info = _call(base, token, "/v1/measure")
    if not info.get("enabled"):
        raise RemoteLatencyError(_STATUS_HINTS[403].format(url=base))
    return info


def describe_remote(url: str, token: str | None) -> str:
    """Where remote figures come from, e.g. ``agent dev-1 (rpi4, aarch64 x4) at http://h:p``."""
    device = agent_info(url, token)["device"]
    profile = device.get("profile") or "no profile"
    return (f"agent {device.get('id')} ({profile}, {device.get('arch')} x{device.get('cpus')}) "
            f"at {_base(url)}")


def _check_fits(timing: Timing, model: bytes, sample: np.ndarray, limits: dict[str, Any],
                runs: int, url: str) -> None:
    size = len(model) + sample.nbytes + _ENVELOPE_BYTES
    if size > limits["max_bytes"]:
        raise RemoteLatencyError(f"{timing.path.name} is {len(model)} bytes, over the "
                                 f"{limits['max_bytes']}-byte limit of the agent at {url}; "
                                 "raise its 'measure_max_bytes'")
    if runs > limits["max_runs"]:
        raise RemoteLatencyError(f"{runs} runs are over the {limits['max_runs']} the agent at "
                                 f"{url} allows; ask for fewer or raise its 'measure_max_runs'")


def measure_remote(timing: Timing, sample: np.ndarray, *, url: str, token: str | None,
                   runs: int = 100, warmup: int = 10, rounds: int = 3,
                   limits: dict[str, Any] | None = None,
                   timeout_s: float = 600.0) -> dict[str, Any]:
    """Time one file on the agent; its full figures (``median_ms``, ``p95_ms``, ``device``...)."""
    base = _base(url)
    limits = limits if limits is not None else agent_info(base, token)["limits"]
    try:
        model = timing.path.read_bytes()
    except OSError as exc:
        raise RemoteLatencyError(f"cannot read {timing.path}: {exc.strerror}") from exc
    first = np.asarray(sample[:1], dtype=np.float32)
    _check_fits(timing, model, first, limits, runs, base)
    body = encode_request(MeasureRequest(format=timing.format, options=timing.runtime_options(),
                                         model=model, sample=first, runs=runs, warmup=warmup,
                                         rounds=min(rounds, runs)))
    deadline = time.monotonic() + BUSY_RETRY_S
    while True:
        try:
            return _call(base, token, "/v1/measure", body, timeout_s, timing.path.name)
        except RemoteLatencyError as exc:
            busy = getattr(exc.__cause__, "code", None) == 429
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def remote_benchmark(timings: list[Timing], sample: np.ndarray, *, url: str, token: str | None,
                     runs: int = 100, warmup: int = 10, rounds: int = 3,
                     label: str = "benchmarking") -> dict[Hashable, float]:
    """Latency (ms) of each file on the agent at ``url``: best round's median, per file."""
    limits = agent_info(url, token)["limits"]
    figures: dict[Hashable, float] = {}
    for t in progress.track(timings, label, total=len(timings)):
        doc = measure_remote(t, sample, url=url, token=token, runs=runs, warmup=warmup,
                             rounds=rounds, limits=limits)
        figures[t.key] = float(doc["median_ms"])
    return figures
