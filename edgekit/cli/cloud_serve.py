"""``edgekit cloud serve``: ingest workers, housekeeping and the HTTP API in one command.

Thin: flags -> CloudConfig -> ``cloud_sync.serve.runner.serve``; the cloud stack is
imported inside the command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def serve(db: str = typer.Option(None, "--db", help="Database URL: sqlite:///FILE or "
                                 "postgresql://USER@HOST/DB (default: SQLite in the data folder)."),
          broker: str = typer.Option(None, "--broker", help="MQTT broker, mqtt://HOST:PORT."),
          http: str = typer.Option(None, "--http", help="Serve the HTTP API on HOST:PORT "
                                   "(default: the config's, when the API is installed)."),
          artifacts: Path = typer.Option(None, "--artifacts", help="Folder of served bundles."),
          pubkey: list[Path] = typer.Option(None, "--pubkey", help="Trusted bundle signing "
                                            "public key (repeatable)."),
          workers: int = typer.Option(None, "--workers", help="Ingest worker processes."),
          closed: bool = typer.Option(False, "--closed-registration", help="Quarantine "
                                      "messages of devices not added with 'cloud device add'."),
          config: Path = typer.Option(None, "--config", help="JSON or YAML cloud settings."),
          no_http: bool = typer.Option(False, "--no-http", help="Run ingest only."),
          client_id_prefix: str = typer.Option(None, "--client-id-prefix", help="MQTT client "
                                               "id prefix of the ingest workers (default: "
                                               "edgekit-ingest-HOST); give each serve on one "
                                               "host its own.")) -> None:
    """Run the cloud: N MQTT ingest workers, retention, device states, the HTTP API."""
    from cloud_sync.config import CloudConfig
    from cloud_sync.serve.runner import ServeOptions
    from cloud_sync.serve.runner import serve as run_serve
    from edge_agent.errors import ConfigError

    flags = dict(db=db, broker=broker, http=http, artifacts=artifacts, workers=workers,
                 pubkeys=tuple(pubkey or ()))
    cfg = CloudConfig.load(config, **flags)
    if closed:
        cfg = CloudConfig.from_dict({**cfg.model_dump(), "ingest": {
            **cfg.ingest.model_dump(), "registration_open": False}})
    if not cfg.pubkeys:
        raise ConfigError("serve needs the public key that signs your bundles: --pubkey "
                          "KEY.pub (make one with 'edgekit keys generate')")
    logging.getLogger().setLevel(logging.INFO)
    run_serve(cfg, ServeOptions(http=None if no_http else _http_address(cfg, http),
                                client_id_prefix=client_id_prefix))


def _http_address(cfg, http: str | None) -> str | None:
    """The API's address: --http, else the config's when the API is installed."""
    if http:
        return http
    import importlib.util

    if importlib.util.find_spec("cloud_sync.api.app") is None:
        logging.getLogger(__name__).warning("HTTP API not installed; serving ingest only")
        return None
    return cfg.http
