"""``python -m cloud_sync.ingest``: one ingest worker process (``cloud serve`` starts N).

Runs until SIGTERM/SIGINT, then finishes and acknowledges the batch in hand and
disconnects, keeping its broker session. Exit status 2 on a configuration or broker
refusal (one line on stderr), so a supervisor can tell it from a crash; 1 when its
writer thread died (the supervisor starts a fresh worker). ``cloud serve`` hands the
config over on stdin (``--config-stdin``, see ``handover.py``), never on the command
line, where any local user could read its secrets.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from edge_agent.errors import EdgekitError


def client_id(prefix: str | None, slot: int) -> str:
    """The stable MQTT client id of a worker slot on this host."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{prefix or 'edgekit-ingest-' + host[:40]}-{slot}"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cloud_sync.ingest")
    parser.add_argument("--slot", type=int, default=0, help="worker slot (stable client id)")
    parser.add_argument("--client-id-prefix", default=None)
    parser.add_argument("--config", type=Path, default=None, help="JSON/YAML cloud config")
    parser.add_argument("--config-stdin", action="store_true",
                        help="read the config (and secrets) from stdin, as 'cloud serve' sends")
    parser.add_argument("--db", default=None)
    parser.add_argument("--broker", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one worker until a signal; returns the exit status."""
    args = _parse(argv)
    logging.basicConfig(level=os.environ.get("EDGEKIT_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s ingest[{args.slot}] %(levelname)s %(message)s")
    from cloud_sync.config import CloudConfig
    from cloud_sync.ingest import handover
    from cloud_sync.ingest.mqtt import broker_for
    from cloud_sync.ingest.worker import IngestWorker, WriterDied, tune_gc
    from cloud_sync.store import open_store

    try:
        base, secrets = handover.read(sys.stdin.buffer) if args.config_stdin else (None, {})
        cfg = CloudConfig.from_dict(base) if base is not None else CloudConfig.load(args.config)
        cfg = CloudConfig.from_dict({**cfg.model_dump(exclude_none=True),
                                     **{k: v for k, v in (("db", args.db),
                                                          ("broker", args.broker)) if v}})
        os.environ.update(secrets)  # not in /proc/PID/environ: that is the initial block
        broker = broker_for(cfg, os.environ)
        engine = open_store(cfg.db_url)
    except EdgekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker = IngestWorker(cfg, engine, broker, client_id(args.client_id_prefix, args.slot))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    tune_gc()  # after start-up: what it allocated stays out of the collector's sight
    try:
        worker.run()
    except EdgekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WriterDied as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
