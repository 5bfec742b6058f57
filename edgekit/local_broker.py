"""Find a broker for the demo: the one the user named, one on localhost, or a private one."""

from __future__ import annotations

import getpass
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from edge_agent.errors import EdgekitError

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED = 10_000


def free_port(attempts: int = 50) -> int:
    """An unused TCP port on 127.0.0.1, for a server started next.

    Picked at random below the kernel's ephemeral range, where no outgoing connection
    takes a source port: a port from ``bind(("127.0.0.1", 0))`` comes from that range,
    so between the pick and the server's own bind any client connection (to a broker, a
    database) could take it, and the server then fails with "address already in use".
    """
    start = _ephemeral_start()
    if start is not None and start - LOWEST_PICKED > 1000:
        for _ in range(attempts):
            port = random.randrange(LOWEST_PICKED, start)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:  # no range known (not Linux): the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ephemeral_start() -> int | None:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class LocalMosquitto:
    """A private mosquitto on 127.0.0.1:<free port>, configured and logging in ``folder``;
    ``extra_conf`` lines (e.g. the ``password_file`` and ``acl_file`` that ``edgekit cloud
    broker-config`` wrote) make it refuse anonymous clients and enforce the ACLs."""

    def __init__(self, folder: Path, extra_conf: tuple[str, ...] = ()) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        """Start it and wait until it listens; a clear error when mosquitto is missing."""
        exe = shutil.which("mosquitto") or next(
            (p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
        if exe is None:
            raise EdgekitError("mosquitto is not installed; apt-get install mosquitto "
                               "(or pass --broker mqtt://HOST:PORT)")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        anonymous = "false" if self.extra_conf else "true"
        conf.write_text("\n".join([f"listener {self.port} 127.0.0.1",
                                   f"allow_anonymous {anonymous}", "persistence false",
                                   f"user {getpass.getuser()}",  # as root: stay root
                                   f"log_dest file {self.folder / 'mosquitto.log'}",
                                   *self.extra_conf]) + "\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EdgekitError(f"mosquitto did not start; see {self.folder}/mosquitto.log")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the broker this object started (by its PID)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def choose_broker(url: str | None, folder: Path) -> tuple[str, LocalMosquitto | None]:
    """(broker URL, the private broker started for it or None)."""
    if url:
        return url, None
    if port_open("127.0.0.1", 1883):
        return "mqtt://127.0.0.1:1883", None
    broker = LocalMosquitto(folder).start()
    return broker.url, broker


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an mqtt:// URL."""
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 1883
