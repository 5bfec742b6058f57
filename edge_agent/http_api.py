"""The agent's local HTTP API (stdlib only), bound to localhost unless told otherwise.

``POST /v1/predict``  JSON ``{"inputs": [...]}`` (or ``{"input": ...}``) or an ``.npy`` body
                      (Content-Type ``application/x-npy``) -> ``{"outputs": [...], ...}``;
                      with ``Accept: application/x-npy`` the first output comes back as .npy
                      bytes (no JSON float formatting: the fast path for large outputs)
``GET /healthz``      200 with the model served, or 503
``GET /metrics``      Prometheus text format
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.config import parse_host_port
from edge_agent.errors import EdgekitError
from edge_agent.inputs import InputError

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20


class HttpError(Exception):
    """An HTTP error answer: status code and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_body(content_type: str, body: bytes) -> list[np.ndarray]:
    """The model inputs in a request body (JSON or .npy), or HttpError 400/415."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/x-npy", "application/octet-stream"):
        try:
            return [np.load(io.BytesIO(body), allow_pickle=False)]
        except (ValueError, OSError, EOFError) as exc:
            raise HttpError(400, f"body is not a valid .npy array: {exc}") from exc
    if kind not in ("application/json", ""):
        raise HttpError(415, f"content type {kind!r} is not supported; send application/json "
                             "or application/x-npy")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not ({"inputs", "input"} & set(doc)):
        raise HttpError(400, 'JSON body must be {"inputs": [array, ...]} or {"input": array}')
    if "input" in doc:
        return [doc["input"]]
    if not isinstance(doc["inputs"], list):
        raise HttpError(400, '"inputs" must be a list of arrays, one per model input')
    return list(doc["inputs"])


def prometheus_text(agent: Agent) -> str:
    """The agent's figures in Prometheus text exposition format."""
    stats = agent.outbox.stats()
    model = agent.model_info()
    lines = [
        "# TYPE edgekit_model_info gauge",
        f'edgekit_model_info{{name="{model["name"]}",version="{model["version"]}"}} 1',
        "# TYPE edgekit_outbox_queued gauge", f"edgekit_outbox_queued {stats.queued}",
        "# TYPE edgekit_outbox_dropped_total counter",
        f"edgekit_outbox_dropped_total {stats.dropped}",
        "# TYPE edgekit_inferences_total counter",
        f"edgekit_inferences_total {agent.total_inferences}",
        "# TYPE edgekit_inference_errors_total counter",
        f"edgekit_inference_errors_total {agent.total_errors}",
        "# TYPE edgekit_probation gauge", f"edgekit_probation {int(agent.probation is not None)}",
        "# TYPE edgekit_mqtt_connected gauge",
        f"edgekit_mqtt_connected {int(bool(agent.link and agent.link.connected))}",
    ]
    return "\n".join(lines) + "\n"


def _handler(agent: Agent) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # one buffered write per response and no Nagle: avoids the 40 ms delayed-ACK stall
        disable_nagle_algorithm = True
        wbufsize = 1 << 16
        timeout = 30  # seconds a client may stall mid-request before its socket is closed

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http: " + fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            self._send(status, json.dumps(doc).encode())

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._json(200, {"status": "ok", "model": agent.model_info(),
                                 "probation": agent.probation is not None})
            elif self.path == "/metrics":
                self._send(200, prometheus_text(agent).encode(), "text/plain; version=0.0.4")
            else:
                self._json(404, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:
            try:
                outputs = self._predict()
                if "application/x-npy" in self.headers.get("Accept", ""):
                    buf = io.BytesIO()
                    np.save(buf, outputs[0], allow_pickle=False)
                    self._send(200, buf.getvalue(), "application/x-npy")
                    return
                status = 200
                doc = {"outputs": [o.tolist() for o in outputs], "model": agent.model_info()}
            except HttpError as exc:
                status, doc = exc.status, {"error": str(exc)}
            except InputError as exc:
                status, doc = 400, {"error": str(exc)}
            except (ValueError, TypeError, RecursionError, MemoryError) as exc:
                status, doc = 400, {"error": f"request not understood: {type(exc).__name__}: "
                                             f"{str(exc)[:200]}"}
            except EdgekitError as exc:
                status, doc = 500, {"error": str(exc)}
            self._json(status, doc)

        def _predict(self) -> list[np.ndarray]:
            if self.path != "/v1/predict":
                raise HttpError(404, f"no such endpoint {self.path}")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError as exc:
                raise HttpError(400, "Content-Length must be a number of bytes") from exc
            if length <= 0:
                raise HttpError(411, "a Content-Length header with the body size is required")
            if length > MAX_BODY:
                raise HttpError(413, f"body of {length} bytes is over the {MAX_BODY} limit")
            inputs = parse_body(self.headers.get("Content-Type", ""), self.rfile.read(length))
            return agent.predict(*inputs)

    return Handler


def serve(agent: Agent, address: str) -> ThreadingHTTPServer:
    """Start the HTTP API on ``host:port`` in a daemon thread; returns the server."""
    host, port = parse_host_port(address)
    server = ThreadingHTTPServer((host, port), _handler(agent))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="edgekit-http", daemon=True).start()
    return server


def bound_address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """The (host, port) the server listens on (useful with port 0)."""
    return server.server_address[0], server.server_address[1]
