"""``edgekit cloud publish BUNDLE.ekb``: upload a signed bundle to the cloud's HTTP API.

The cloud verifies the signature against its own trusted keys, stores the bundle by
sha256 and registers the model version; this command checks locally only that the
file is a bundle, so a typo fails before any upload. httpx is imported inside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from edge_agent.errors import EdgekitError, first_line
from edgekit.cli.options import JsonFlag
from edgekit.cli.output import console, print_json

API_ENV, TOKEN_ENV = "EDGEKIT_API", "EDGEKIT_API_TOKEN"
PUBLISH_PATH = "/api/v1/models"
HINTS = {401: f"pass --token or set {TOKEN_ENV} to the server's API token",
         409: "publish it under a new version",
         413: "the bundle is over the server's upload cap",
         503: "the server is not set up for this; see its log"}


class PublishError(EdgekitError):
    """The bundle could not be published (bad file, unreachable or refusing API)."""


def _api_and_token(api: str | None, token: str | None) -> tuple[str, str]:
    api = api or os.environ.get(API_ENV)
    token = token or os.environ.get(TOKEN_ENV)
    if not api:
        raise PublishError(f"no API URL; pass --api http://HOST:8000 or set {API_ENV}")
    if not api.startswith(("http://", "https://")):
        raise PublishError(f"--api {api!r} is not an http:// or https:// URL")
    if not token:
        raise PublishError(f"no API token; pass --token or set {TOKEN_ENV}")
    return api.rstrip("/"), token


def _check_bundle(bundle: Path) -> None:
    from edge_agent.bundle import read_manifest_unverified

    if not bundle.is_file():
        raise PublishError(f"bundle {bundle} does not exist; build one with 'edgekit build' "
                           "or 'edgekit bundle pack'")
    read_manifest_unverified(bundle)  # BundleError (one line) when it is not a bundle


def _refusal(response: Any) -> PublishError:
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = first_line(Exception(response.text or response.reason_phrase))
    hint = HINTS.get(response.status_code)
    return PublishError(f"the cloud API refused the bundle (HTTP {response.status_code}): "
                        f"{message}" + (f"; {hint}" if hint else ""))


def upload(bundle: Path, api: str, token: str, timeout_s: float) -> tuple[dict[str, Any], int]:
    """POST the bundle as the raw body; (the server's JSON answer, HTTP status)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    try:
        with open(bundle, "rb") as body:
            response = httpx.post(api + PUBLISH_PATH, content=body, headers=headers,
                                  timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PublishError(f"cannot reach the cloud API at {api}: {first_line(exc)}; check --api "
                           "and that 'edgekit cloud serve' runs") from None
    if response.status_code not in (200, 201):
        raise _refusal(response)
    try:
        return response.json(), response.status_code
    except ValueError:
        raise PublishError(f"{api} answered with something that is not JSON; is --api the "
                           "edgekit cloud API?") from None


def publish(bundle: Path = typer.Argument(..., help="The signed .ekb bundle."),
            api: str = typer.Option(None, "--api", help=f"Cloud API URL, e.g. "
                                    f"http://cloud:8000 (default: ${API_ENV})."),
            token: str = typer.Option(None, "--token", help=f"API token (default: "
                                      f"${TOKEN_ENV})."),
            timeout_s: float = typer.Option(300.0, "--timeout", min=1.0,
                                            help="Seconds to wait for the upload."),
            as_json: bool = JsonFlag) -> None:
    """Publish a signed bundle: the cloud verifies it, stores it, registers its version."""
    api, token = _api_and_token(api, token)
    _check_bundle(bundle)
    doc, status = upload(bundle, api, token, timeout_s)
    if as_json:
        print_json(doc)
        return
    what = "published" if status == 201 else "already published (nothing changed):"
    console.print(
        f"{what} {doc.get('name')} {doc.get('version')} for {doc.get('profile')} "
        f"({doc.get('format')} {doc.get('precision')}, {doc.get('size')} bytes, signed by "
        f"key {doc.get('key_id')})\n  sha256 {doc.get('sha256')}\n  download {api}"
        f"{doc.get('url')}", highlight=False)
