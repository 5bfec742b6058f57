"""Many paho clients on one thread: their sockets driven by one ``selectors`` loop.

paho's external-loop hooks (``on_socket_open``/``close``/``register_write``/
``unregister_write``) tell us which sockets to watch; readable sockets get
``loop_read``, writable ones ``loop_write``, and every client gets ``loop_misc``
(keepalive pings) about once a second. One process runs thousands of real MQTT
connections this way, with no thread per client.
"""

from __future__ import annotations

import contextlib
import selectors
import time

import paho.mqtt.client as mqtt

MISC_EVERY_S = 1.0


class ClientLoop:
    """One selector for many paho clients; ``attach`` a client before it connects."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.clients: list[mqtt.Client] = []
        self._last_misc = time.monotonic()

    def attach(self, client: mqtt.Client) -> None:
        """Route this client's socket through the loop."""
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        self.clients.append(client)

    def _opened(self, client, userdata, sock) -> None:
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _closed(self, client, userdata, sock) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def _want_write(self, client, userdata, sock) -> None:
        self._modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _no_write(self, client, userdata, sock) -> None:
        self._modify(sock, selectors.EVENT_READ, client)

    def _modify(self, sock, events: int, client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, events, client)

    def run_once(self, timeout: float) -> None:
        """Serve ready sockets for up to ``timeout`` seconds; keepalives when due."""
        for key, mask in self.selector.select(max(0.0, timeout)):
            client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= MISC_EVERY_S:
            self._last_misc = now
            for client in self.clients:
                client.loop_misc()

    def run_for(self, seconds: float, step: float = 0.02) -> None:
        """Serve for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.run_once(min(step, left))

    def close(self) -> None:
        """Forget the selector (sockets are closed by their clients)."""
        self.selector.close()
