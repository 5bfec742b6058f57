"""``edgekit agent``: the on-device side. Imports only what a device has (no torch)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from edgekit.cli.output import console

app = typer.Typer(help="Run models on the device: serve, report telemetry, update safely.",
                  no_args_is_help=True)

# CLI flag -> config key; a flag left unset keeps the config file's value.
_FLAGS = ("bundle", "device_id", "fleet", "broker", "pubkeys", "state_dir", "http",
          "telemetry_interval_s", "username", "password", "tls_ca", "tls_cert", "tls_key",
          "profile", "http_token_file", "measure")


def read_config_file(path: Path) -> dict:
    """A config file as a dict: JSON, or YAML for .yaml/.yml."""
    from edge_agent.errors import ConfigError, first_line

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        return json.loads(text)
    except ValueError as exc:  # yaml.YAMLError derives from Exception; handled below
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"config {path} is not valid YAML: {first_line(exc)}") from exc


def build_config(config: Path | None, **flags: Any):
    """Merge the config file (if any) with the flags given on the command line."""
    from edge_agent.config import AgentConfig

    doc = read_config_file(config) if config else {}
    for key in _FLAGS:
        value = flags.get(key)
        if value not in (None, []):
            doc[key] = [str(v) for v in value] if key == "pubkeys" else (
                str(value) if isinstance(value, Path) else value)
    return AgentConfig.from_dict(doc)


@app.command("run")
def run(
    config: Path = typer.Option(None, "--config", help="JSON or YAML file with these settings."),
    bundle: Path = typer.Option(None, "--bundle", help="Bundle to install if newer than the "
                                "state's (required on first start)."),
    device_id: str = typer.Option(None, "--device-id"),
    fleet: str = typer.Option(None, "--fleet"),
    broker: str = typer.Option(None, "--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT."),
    pubkey: list[Path] = typer.Option(None, "--pubkey", help="Trusted public key (repeatable)."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Where models and the outbox live."),
    http: str = typer.Option(None, "--http", help="Serve the HTTP API on HOST:PORT."),
    http_token_file: Path = typer.Option(
        None, "--http-token-file", help="File holding the HTTP API's bearer token (or set "
        "$EDGEKIT_AGENT_TOKEN); required when --http listens beyond loopback."),
    measure: bool = typer.Option(None, "--measure/--no-measure", help="Allow builds to time "
                                 "candidate models here (POST /v1/measure; default on)."),
    telemetry_interval: float = typer.Option(None, "--telemetry-interval", help="Seconds."),
    username: str = typer.Option(None, "--username"),
    password: str = typer.Option(None, "--password", envvar="EDGEKIT_MQTT_PASSWORD"),
    tls_ca: Path = typer.Option(None, "--tls-ca", help="CA certificate (enables TLS)."),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="Client certificate (mTLS)."),
    tls_key: Path = typer.Option(None, "--tls-key", help="Client key (mTLS)."),
    profile: str = typer.Option(None, "--profile", help="Override the bundle's profile."),
) -> None:
    """Run the agent until SIGTERM/SIGINT: serve, report, obey commands, update safely."""
    from edge_agent.agent import Agent

    cfg = build_config(config, bundle=bundle, device_id=device_id, fleet=fleet, broker=broker,
                       pubkeys=pubkey, state_dir=state_dir, http=http,
                       http_token_file=http_token_file, measure=measure,
                       telemetry_interval_s=telemetry_interval, username=username,
                       password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                       profile=profile)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = Agent(cfg)
    agent.start()
    where = ""
    if agent.http is not None:
        host, port = agent.http.server_address[:2]
        where = f", HTTP on http://{host}:{port}"
    model = agent.model_info()
    console.print(f"agent {cfg.device_id} serving {model['name']} v{model['version']}"
                  f"{where}; broker {cfg.broker or 'none (offline)'}", highlight=False)
    stop.wait()
    agent.stop()


@app.command("service")
def service(
    config: Path = typer.Option(..., "--config", help="The agent's config file."),
    install: bool = typer.Option(False, "--install", help="Write the unit into --unit-dir."),
    unit_dir: Path = typer.Option(Path("/etc/systemd/system"), "--unit-dir"),
    user: str = typer.Option("edgekit", "--user", help="Unprivileged user to run as."),
) -> None:
    """Print (or --install) a systemd unit that keeps the agent running."""
    from edge_agent.service import install_unit, unit_text

    cfg = build_config(config)
    text = unit_text(config, cfg.state_dir, user)
    if not install:
        typer.echo(text, nl=False)
        return
    path = install_unit(text, unit_dir)
    console.print(f"wrote {path}. Next: useradd --system {user}; chown -R {user} "
                  f"{cfg.state_dir}; systemctl daemon-reload; systemctl enable --now "
                  f"{path.name}", highlight=False)


@app.command("selftest")
def selftest(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle file (.ekb)."),
    pubkey: list[Path] = typer.Option(..., "--pubkey", help="Trusted public key (repeatable)."),
) -> None:
    """Verify a bundle, load it in this device's runtime and check its golden output."""
    from edge_agent.bundle import open_bundle, trusted_keys
    from edge_agent.model import LoadedModel

    with open_bundle(bundle, trusted_keys(pubkey)) as opened:
        loaded = LoadedModel.load(opened)
        diff = loaded.golden.max_abs_diff if loaded.golden else float("nan")
        console.print(f"ok: {opened.manifest.model.name} v{opened.manifest.model.version} runs "
                      f"here on {loaded.session.backend}; golden max abs diff {diff:.3g}",
                      highlight=False)
