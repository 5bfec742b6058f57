"""A tiny HTTP file server for update tests (Range requests, optional throttling and faults),
and ``healthy``: whether a service on a port answers ``/healthz``."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    """Serves files of one folder on 127.0.0.1:<free port>; ``url(name)`` gives their URLs."""

    def __init__(self, folder: Path, bytes_per_s: float | None = None,
                 fail_after: int | None = None) -> None:
        self.folder = Path(folder)
        self.bytes_per_s = bytes_per_s
        self.fail_after = fail_after  # drop the connection after this many bytes, once
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = owner.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                owner.requests.append({"path": self.path, "range": rng})
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self._write(body)

            def _write(self, body: bytes) -> None:
                chunk = 4096
                for i in range(0, len(body), chunk):
                    if owner.fail_after is not None and i >= owner.fail_after:
                        owner.fail_after = None
                        self.close_connection = True
                        return
                    self.wfile.write(body[i:i + chunk])
                    if owner.bytes_per_s:
                        time.sleep(chunk / owner.bytes_per_s)

        return Handler


def healthy(port: int, timeout: float = 2.0) -> bool:
    """True when ``http://127.0.0.1:<port>/healthz`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False
