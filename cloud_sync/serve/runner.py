"""``edgekit cloud serve``: migrate, run N ingest workers, housekeeping, leader election and
the HTTP API, until SIGTERM/SIGINT.

Order on start: the store is migrated (every worker also checks, cheaply), workers
start, the leadership and housekeeping threads start, then the HTTP API (uvicorn,
``cloud_sync.api.app.create_app``) runs in the foreground, or the process just waits
when no HTTP address is set. On SIGTERM/SIGINT: the HTTP server stops, workers get
SIGTERM (each commits and acknowledges its batch in hand), threads end, the lock is
released.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass

from cloud_sync.config import CloudConfig
from cloud_sync.errors import CloudError
from cloud_sync.leader import Leadership
from cloud_sync.serve.jobs import Housekeeping, action_jobs, rollout_jobs, trigger_jobs
from cloud_sync.serve.supervisor import WorkerSupervisor
from cloud_sync.store import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` runs besides ingest: the HTTP API (``http`` = HOST:PORT or None)."""

    http: str | None = None
    client_id_prefix: str | None = None


def parse_http(address: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); CloudError with the fix otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CloudError(f"HTTP address {address!r} must be HOST:PORT, e.g. 127.0.0.1:8000")
    return host, int(port)


def _http_server(cfg: CloudConfig, engine, address: str):
    try:
        from cloud_sync.api.app import create_app
    except ImportError as exc:
        raise CloudError(f"the HTTP API cannot be loaded ({exc}); install edgekit[cloud] or "
                         "run serve without --http") from None
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn without its own signal handling: serve's handlers stop it, and the
        process exits normally after the clean shutdown (uvicorn would re-raise)."""

        @contextlib.contextmanager
        def capture_signals(self):
            yield

    host, port = parse_http(address)
    config = uvicorn.Config(create_app(cfg, engine), host=host, port=port, log_level="warning",
                            lifespan="on")
    return _Server(config)


def serve(cfg: CloudConfig, options: ServeOptions) -> None:
    """Run everything until a signal; returns after a clean shutdown."""
    if not cfg.broker:
        raise CloudError("serve needs a broker: pass --broker mqtt://HOST:PORT")
    engine = open_store(cfg.db_url)
    stop = threading.Event()
    server = _http_server(cfg, engine, options.http) if options.http else None
    workers = WorkerSupervisor(cfg, options.client_id_prefix)
    leadership = Leadership(engine)
    threads = [threading.Thread(target=leadership.run, args=(stop,), name="edgekit-leader"),
               threading.Thread(target=Housekeeping(cfg, engine, leadership.confirm)
                                .run, args=(stop,), name="edgekit-housekeeping"),
               threading.Thread(target=Housekeeping(cfg, engine, leadership.confirm,
                                                    trigger_jobs(cfg)).run,
                                args=(stop,), name="edgekit-controller"),
               threading.Thread(target=Housekeeping(cfg, engine, leadership.confirm,
                                                    action_jobs(cfg)).run,
                                args=(stop,), name="edgekit-actions"),
               threading.Thread(target=Housekeeping(cfg, engine, leadership.confirm,
                                                    rollout_jobs(cfg)).run,
                                args=(stop,), name="edgekit-rollouts")]
    try:
        workers.start()
        for thread in threads:
            thread.start()
        log.info("serving: %d ingest worker(s), store %s, HTTP %s", cfg.workers,
                 engine.url.render_as_string(hide_password=True), options.http or "off")
        _on_signal(lambda: _request_stop(stop, server))
        if server is not None:
            server.run()  # returns once should_exit is set (by the signal handler)
        else:
            while not stop.wait(0.5):
                pass
    finally:
        stop.set()
        workers.stop()
        for thread in threads:
            if thread.is_alive():
                thread.join(10)
        engine.dispose()
        log.info("serve stopped")


def _on_signal(handler) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: handler())


def _request_stop(stop: threading.Event, server) -> None:
    stop.set()
    if server is not None:
        server.should_exit = True
