"""``edgekit rollout start|status|list|abort``: staged rollouts through the cloud's HTTP API
(``/api/v1/rollouts``). Every subcommand takes ``--api`` and ``--token`` (defaults:
``$EDGEKIT_API``, ``$EDGEKIT_API_TOKEN``); errors are one line. httpx is imported inside."""

from __future__ import annotations

import os
from typing import Any

import typer

from edge_agent.errors import EdgekitError, first_line
from edgekit.cli.options import JsonFlag
from edgekit.cli.output import console, local_time, people_table, print_json

API_ENV, TOKEN_ENV = "EDGEKIT_API", "EDGEKIT_API_TOKEN"
PATH = "/api/v1/rollouts"
ApiOption = typer.Option(None, "--api", help=f"Cloud API URL (default: ${API_ENV}).")
TokenOption = typer.Option(None, "--token", help=f"API token (default: ${TOKEN_ENV}).")

app = typer.Typer(help="Staged rollouts: canary, bake, waves, automatic halt and rollback.",
                  no_args_is_help=True)


class RolloutCliError(EdgekitError):
    """The API could not be reached or refused the request."""


def _client(api: str | None, token: str | None) -> Any:
    """An httpx client on the API with the bearer token."""
    import httpx

    api, token = api or os.environ.get(API_ENV), token or os.environ.get(TOKEN_ENV)
    if not api or not api.startswith(("http://", "https://")):
        raise RolloutCliError(f"no usable API URL; pass --api http://HOST:8000 or set {API_ENV}")
    if not token:
        raise RolloutCliError(f"no API token; pass --token or set {TOKEN_ENV}")
    return httpx.Client(base_url=api.rstrip("/"), timeout=30.0,
                        headers={"Authorization": f"Bearer {token}"})


def _call(api: str | None, token: str | None, method: str, path: str,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    client = _client(api, token)
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise RolloutCliError(f"cannot reach the cloud API: {first_line(exc)}; check --api "
                              "and that 'edgekit cloud serve' runs") from None
    finally:
        client.close()
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200]}
    if response.status_code >= 400:
        raise RolloutCliError(f"the cloud API refused (HTTP {response.status_code}): "
                              f"{doc.get('error', doc)}")
    return doc


def _policy(canary: str | None, bake: float | None, waves: str | None,
            offline: str | None, max_p95_ratio: float | None = None) -> dict[str, Any]:
    from cloud_sync.rollouts.policy import parse_canary

    doc: dict[str, Any] = {}
    try:
        if canary:
            doc.update(parse_canary(canary))
        if waves:
            doc["waves"] = [float(w) for w in waves.split(",") if w.strip()]
    except ValueError:
        raise RolloutCliError("--canary takes PERCENT% or a device count, --waves a list of "
                              "percentages such as 10,50,100") from None
    if bake is not None:
        doc["bake_s"] = bake
    if offline:
        doc["offline"] = offline
    if max_p95_ratio is not None:
        doc["thresholds"] = {"max_p95_ratio": max_p95_ratio}
    return doc


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


FIGURE_NAMES = {"non_finite_rate": "NaN/inf rate", "error_rate": "error rate",
                "p95_ratio": "p95 latency ratio", "confidence_drop": "confidence drop",
                "class_distance": "class distance beyond control's", "failure_pct": "failed %"}


def _show(doc: dict[str, Any]) -> None:
    from cloud_sync.rollouts.states import shown_device_state


    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc.get("device_counts", {}).items()))
    steps = ", ".join(str(n) for n in doc["waves"])
    console.print(f"rollout {doc['id']}: {doc['model']} {doc['version']} -> "
                  f"{doc.get('fleet')}  state {doc['state']}, step {doc['wave']} of "
                  f"{len(doc['waves']) - 1} (cumulative devices {steps})\n  devices: "
                  f"{counts}", highlight=False)
    verdict = doc.get("verdict") or {}
    if verdict:
        console.print(f"  verdict: {verdict.get('outcome')} ({verdict.get('kind', '-')}): "
                      f"{'; '.join(verdict.get('reasons') or []) or 'all checks passed'}",
                      highlight=False)
        figs = verdict.get("figures") or {}
        shown = [f"{name} {_figure(figs[k])}" for k, name in FIGURE_NAMES.items() if k in figs]
        if shown:
            console.print("  figures: " + ", ".join(shown), highlight=False)
    table = people_table("device", "step", "state", "detail", title="devices")
    for d in doc.get("devices", []):
        result = d.get("result") or {}
        detail = result.get("error") or (result.get("detail") or {}).get("phase") or ""
        shown = shown_device_state(doc["state"], d["state"]).replace("_", " ")
        table.add_row(d["device_id"], str(d["wave"]), shown, str(detail))
    console.print(table)
    for e in doc.get("timeline", []):
        console.print(f"  {local_time(e['at'])}  {e['state']:<12} {e['message']}", highlight=False)


@app.command("start")
def start(model: str = typer.Option(..., "--model"), version: str = typer.Option(
              ..., "--version"),
          fleet: str = typer.Option(None, "--fleet", help="Every device of this fleet."),
          devices: str = typer.Option(None, "--devices", help="Comma-separated device ids."),
          canary: str = typer.Option(None, "--canary", help="PERCENT% or a device count."),
          bake: float = typer.Option(None, "--bake", help="Seconds each step bakes."),
          waves: str = typer.Option(None, "--waves", help="Cumulative percentages, e.g. "
                                    "10,50,100."),
          offline: str = typer.Option(None, "--offline", help="wait, skip or fail."),
          max_p95_ratio: float = typer.Option(None, "--max-p95-ratio", help="Halt when the "
                                              "canary's p95 latency is this many times "
                                              "control's (default 3)."),
          api: str = ApiOption, token: str = TokenOption, as_json: bool = JsonFlag) -> None:
    """Start a staged rollout of a published model version."""
    if bool(fleet) == bool(devices):
        raise RolloutCliError("pass exactly one of --fleet and --devices")
    body = {"model": model, "version": version, "fleet": fleet,
            "devices": [d.strip() for d in devices.split(",")] if devices else None,
            "policy": _policy(canary, bake, waves, offline, max_p95_ratio)}
    doc = _call(api, token, "POST", PATH, body)
    print_json(doc) if as_json else _show(doc)


@app.command("status")
def status(rollout_id: int = typer.Argument(...), api: str = ApiOption,
           token: str = TokenOption, as_json: bool = JsonFlag) -> None:
    """One rollout: state, steps, devices, verdict figures and timeline."""
    doc = _call(api, token, "GET", f"{PATH}/{rollout_id}")
    print_json(doc) if as_json else _show(doc)


@app.command("list")
def list_(api: str = ApiOption, token: str = TokenOption, as_json: bool = JsonFlag) -> None:
    """Rollouts, newest first."""

    items = _call(api, token, "GET", PATH)["items"]
    if as_json:
        print_json(items)
        return
    table = people_table("id", "model", "version", "target", "state", "step", "devices",
                         title=f"{len(items)} rollout(s)")
    for r in items:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r["device_counts"].items()))
        target = r["target"].get("fleet") or f"{len(r['target'].get('devices', []))} devices"
        table.add_row(str(r["id"]), r["model"], r["version"], target, r["state"],
                      f"{r['wave']}/{len(r['waves']) - 1}", counts)
    console.print(table)


@app.command("abort")
def abort(rollout_id: int = typer.Argument(...), api: str = ApiOption,
          token: str = TokenOption, as_json: bool = JsonFlag) -> None:
    """Halt a rollout; every device that took the version is rolled back."""
    doc = _call(api, token, "POST", f"{PATH}/{rollout_id}/abort")
    if as_json:
        print_json(doc)
    else:
        console.print(f"rollout {rollout_id}: {doc['state']}", highlight=False)
