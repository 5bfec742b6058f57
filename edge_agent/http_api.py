"""The agent's local HTTP API (stdlib only), bound to localhost unless told otherwise.

``POST /v1/predict``  JSON ``{"inputs": [...]}`` (or ``{"input": ...}``) or an ``.npy`` body
                      (Content-Type ``application/x-npy``) -> the task's answer as JSON: a
                      classifier ``{"outputs": [...], ...}``; a detector ``{"detections":
                      [{"box", "score", "class", "label"}]}`` (a batch: ``{"images":
                      [{"detections": [...]}, ...]}``); a generic model ``{"outputs": {name:
                      values}}``. Query options (``edge_agent.tasks.options``):
                      ``score_threshold``, ``iou_threshold``, ``max_detections``,
                      ``image_size=H,W`` (detectors), ``raw=1`` (the raw outputs as
                      ``{"outputs": [...]}``). Raw tensors as files: ``Accept:
                      application/x-npz`` (every output, keyed by name) or
                      ``application/x-npy`` (the first output; no JSON float formatting: the
                      fast path for large outputs)
``POST /v1/measure``  time a candidate model in a separate runtime instance (see
                      ``edge_agent.measure`` for the body); 429 while another runs,
                      409 while a new model is on probation, 403 when ``measure: false``
``GET /v1/measure``   whether measuring is enabled, its limits, and the device
``GET /healthz``      200 with the model served, or 503
``GET /metrics``      Prometheus text format

With a token configured (``http_token``, ``http_token_file`` or $EDGEKIT_AGENT_TOKEN), every
endpoint but ``/healthz`` needs ``Authorization: Bearer <token>`` (401 otherwise); the API
refuses to listen beyond loopback without one.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edge_agent.config import check_http_exposure, parse_host_port, token_matches
from edge_agent.errors import ConfigError, EdgekitError
from edge_agent.inputs import InputError
from edge_agent.measure import (
    CONTENT_TYPE,
    MeasureBusy,
    MeasureError,
    MeasureLimits,
    Measurer,
    device_info,
)

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


def parse_options(query: str) -> dict[str, str]:
    """Prediction options from a query string (checked by ``PredictOptions.parse``)."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise HttpError(400, f"query string is not understood: {exc}") from exc
    twice = sorted(k for k, v in params.items() if len(v) > 1)
    if twice:
        raise HttpError(400, f"option {twice[0]!r} is given more than once; give it once")
    return {k: v[0] for k, v in params.items()}


def jsonable(value: Any) -> Any:
    """An answer with its arrays as (nested) lists, ready for ``json.dumps``."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def npz_bytes(names: list[str], outputs: list[np.ndarray]) -> bytes:
    """The raw outputs as one .npz, keyed by output name."""
    buf = io.BytesIO()
    np.savez(buf, **{name: np.asarray(o) for name, o in zip(names, outputs)})
    return buf.getvalue()


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


def _device(agent: Agent) -> dict[str, Any]:
    profile = agent.cfg.profile or agent.active.bundle.manifest.profile
    return device_info(agent.cfg.device_id, profile)


def _measure_info(agent: Agent, measurer: Measurer | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"enabled": measurer is not None, "device": _device(agent)}
    if measurer is not None:
        doc["limits"] = {"max_bytes": measurer.limits.max_bytes,
                         "max_runs": measurer.limits.max_runs,
                         "max_warmup": measurer.limits.max_warmup,
                         "max_rounds": measurer.limits.max_rounds}
    return doc


def _handler(agent: Agent, token: str | None, measurer: Measurer | None) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # one buffered write per response and no Nagle: avoids the 40 ms delayed-ACK stall
        disable_nagle_algorithm = True
        wbufsize = 1 << 16
        timeout = 30  # seconds a client may stall mid-request before its socket is closed

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http: " + fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  headers: tuple[tuple[str, str], ...] = ()) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            self._send(status, json.dumps(doc).encode())

        def _authorized(self) -> bool:
            if token is None or self.path == "/healthz" or token_matches(
                    self.headers.get("Authorization"), token):
                return True
            self.close_connection = True  # an unread request body must not be taken as a request
            body = json.dumps({"error": "missing or wrong token; send 'Authorization: Bearer "
                                        "<token>' with the agent's http_token"}).encode()
            self._send(401, body, headers=(("WWW-Authenticate", "Bearer"),))
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/healthz":
                self._json(200, {"status": "ok", "model": agent.model_info(),
                                 "probation": agent.probation is not None})
            elif self.path == "/metrics":
                self._send(200, prometheus_text(agent).encode(), "text/plain; version=0.0.4")
            elif self.path == "/v1/measure":
                self._json(200, _measure_info(agent, measurer))
            else:
                self._json(404, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            routes = {"/v1/predict": self._predict, "/v1/measure": self._measure}
            path = urlsplit(self.path).path
            try:
                if path not in routes:
                    raise HttpError(404, f"no such endpoint {path}")
                routes[path]()
                return
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

        def _body(self, limit: int) -> bytes:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError as exc:
                raise HttpError(400, "Content-Length must be a number of bytes") from exc
            if length <= 0:
                raise HttpError(411, "a Content-Length header with the body size is required")
            if length > limit:
                self.close_connection = True  # the unread body must not be taken as a request
                raise HttpError(413, f"body of {length} bytes is over the {limit} limit")
            return self.rfile.read(length)

        def _predict(self) -> None:
            options = parse_options(urlsplit(self.path).query)
            inputs = parse_body(self.headers.get("Content-Type", ""), self._body(MAX_BODY))
            accept = self.headers.get("Accept", "")
            as_file = next((k for k in ("application/x-npz", "application/x-npy")
                            if k in accept), None)
            if as_file is not None:
                options["raw"] = "1"
            model = agent.active.model  # the names of what this call's model returns
            answer = agent.predict(*inputs, **options)
            if as_file == "application/x-npz":
                names = [o.name for o in model.manifest.outputs]
                self._send(200, npz_bytes(names, answer), as_file)
            elif as_file == "application/x-npy":
                buf = io.BytesIO()
                np.save(buf, answer[0], allow_pickle=False)
                self._send(200, buf.getvalue(), as_file)
            else:
                doc = {"outputs": answer} if isinstance(answer, list) else answer
                self._json(200, {**jsonable(doc), "model": agent.model_info()})

        def _measure(self) -> None:
            if measurer is None:
                self.close_connection = True
                raise HttpError(403, "measuring is disabled on this agent; set 'measure: true' "
                                     "in its config to allow it")
            kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind != CONTENT_TYPE:
                self.close_connection = True
                raise HttpError(415, f"send the measure request as {CONTENT_TYPE} "
                                     "(edge_agent.measure.encode_request)")
            body = self._body(measurer.limits.max_bytes)
            if agent.probation is not None:
                raise HttpError(409, "the agent is on probation with a new model and measuring "
                                     "now would skew its health checks; retry once it commits")
            try:
                result = measurer.run(body, _device(agent))
            except MeasureBusy as exc:
                raise HttpError(429, str(exc)) from exc
            except MeasureError as exc:
                raise HttpError(400, str(exc)) from exc
            self._json(200, result.to_dict())

    return Handler


HTTP_BIND_ERROR = "cannot serve HTTP on"  # how a refused address's error starts


def serve(agent: Agent, address: str) -> ThreadingHTTPServer:
    """Start the HTTP API on ``host:port`` in a daemon thread; returns the server."""
    host, port = parse_host_port(address)
    token = agent.cfg.resolved_http_token()
    check_http_exposure(address, token)
    measurer = None
    if agent.cfg.measure:
        measurer = Measurer(MeasureLimits(max_bytes=agent.cfg.measure_max_bytes,
                                          max_runs=agent.cfg.measure_max_runs))
    try:
        server = ThreadingHTTPServer((host, port), _handler(agent, token, measurer))
    except OSError as exc:  # in use, not an address of this host, a privileged port
        raise ConfigError(f"{HTTP_BIND_ERROR} {address}: {exc.strerror or exc}; pick another "
                          "--http HOST:PORT (or stop what listens there)") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="edgekit-http", daemon=True).start()
    return server


def bound_address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """The (host, port) the server listens on (useful with port 0)."""
    return server.server_address[0], server.server_address[1]
