"""A real uvicorn serving an app on 127.0.0.1:<free port>, in a thread, for tests whose
clients are real (the agent's downloader, the CLI's httpx)."""

from __future__ import annotations

import threading
import time

import uvicorn

from edgekit.local_broker import free_port


class LiveServer:
    """``with LiveServer(app) as server: server.url``; stops on exit."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
