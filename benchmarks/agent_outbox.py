"""Benchmark: how fast the agent's durable outbox drains to the broker after an outage.

Per run: fill an outbox with N telemetry-sized messages while no broker is there
(a device that lost its network), then start a private mosquitto (and, in the
second case, a subscriber) and the link, and time from the link's CONNACK to an
empty outbox (every row PUBACKed and deleted). Reported twice: with nobody
subscribed (device -> broker only) and with one QoS 1 subscriber on the same
machine (the broker also delivers everything). Also reports the durable put rate.

    .venv/bin/python benchmarks/agent_outbox.py [--messages 20000] [--runs 3] [--no-write]

Prints the figures and writes them to benchmarks/RESULTS.md, section
"Agent outbox drain" (only that section is replaced, by benchmarks/results_file.py).
Target: >= 1,000 msg/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paho.mqtt import __version__ as paho_version  # noqa: E402

from benchmarks.results_file import RESULTS, write_section  # noqa: E402
from edge_agent.mqtt_link import BrokerConfig, MqttLink  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from tests.brokers import MOSQUITTO, Mosquitto, Subscriber, free_port  # noqa: E402

TOPIC = "edgekit/bench/dev-1/telemetry"
SECTION = "## Agent outbox drain"
TARGET = 1000.0


def telemetry_like(seq: int, size: int) -> bytes:
    """A JSON payload of about ``size`` bytes carrying ``seq``, like a telemetry message."""
    doc = {"v": 1, "device_id": "dev-1", "seq": seq, "ts": time.time(), "pad": ""}
    doc["pad"] = "x" * max(0, size - len(json.dumps(doc)))
    return json.dumps(doc).encode()


def one_run(folder: Path, messages: int, size: int, inflight: int, subscribe: bool) -> dict:
    """Fill offline, bring the broker up, time the drain. Returns the figures of this run."""
    port = free_port()
    box = Outbox(folder / "outbox.sqlite")
    started = time.perf_counter()
    for _ in range(messages):
        box.put("telemetry", TOPIC, lambda seq: telemetry_like(seq, size))
    put_rate = messages / (time.perf_counter() - started)
    link = MqttLink(BrokerConfig(port=port, reconnect_min_s=0.05, reconnect_max_s=0.2),
                    "bench-dev", box, TOPIC.replace("telemetry", "status"), b"offline", [],
                    lambda topic, payload: None, max_inflight=inflight)
    broker = Mosquitto(folder / "broker", port=port).start()
    subscriber = Subscriber(port, TOPIC, client_id="bench-cloud").start() if subscribe else None
    link.start()  # (started once the subscriber listens, so it misses nothing)
    try:
        while not link.connected:
            time.sleep(0.001)
        connected = time.perf_counter()
        while box.stats().queued:
            time.sleep(0.005)
        drain_s = time.perf_counter() - connected
        if subscriber is not None:
            _wait_count(subscriber, messages, 120)
    finally:
        link.stop()
        if subscriber is not None:
            subscriber.stop()
        broker.stop()
        box.close()
    stats = link.stats()
    assert stats["disconnects"] == 0 and stats["acked"] == messages, stats
    return {"put_rate": put_rate, "drain_s": drain_s, "drain_rate": messages / drain_s}


def _wait_count(subscriber: Subscriber, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while subscriber.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"subscriber got {subscriber.count()} of {expected} messages")
        time.sleep(0.05)


def measure(args: argparse.Namespace, subscribe: bool) -> dict:
    """Median figures over ``args.runs`` runs."""
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
            runs.append(one_run(Path(tmp), args.messages, args.size, args.inflight, subscribe))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def mosquitto_version() -> str:
    """'mosquitto 2.0.11' or just 'mosquitto' when it does not say."""
    try:
        done = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "mosquitto"
    words = (done.stdout + done.stderr).split()
    return f"mosquitto {words[2]}" if words[:2] == ["mosquitto", "version"] else "mosquitto"


def section(args: argparse.Namespace, alone: dict, delivered: dict) -> str:
    """The RESULTS.md section for these figures."""
    return "\n".join([
        SECTION, "",
        f"`benchmarks/agent_outbox.py`, paho-mqtt {paho_version}, {mosquitto_version()} on "
        f"127.0.0.1. A backlog of "
        f"{args.messages:,} messages of {args.size} bytes, put while offline, drains when the "
        f"broker comes back; QoS 1, at most {args.inflight} in flight; median of {args.runs} "
        "runs. Time from CONNACK to an empty outbox (every row PUBACKed and deleted).", "",
        "| case | drain rate | drain time | durable put rate |",
        "|---|---|---|---|",
        f"| nobody subscribed | {alone['drain_rate']:,.0f} msg/s | {alone['drain_s']:.2f} s | "
        f"{alone['put_rate']:,.0f} msg/s |",
        f"| one QoS 1 subscriber on the same host | {delivered['drain_rate']:,.0f} msg/s | "
        f"{delivered['drain_s']:.2f} s | {delivered['put_rate']:,.0f} msg/s |", "",
        f"Target: >= {TARGET:,.0f} msg/s. The put rate is one fsync per message "
        "(WAL, synchronous=FULL); expect far less on an SD card.", ""])


def main() -> None:
    """Run the benchmark, print the figures, write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=300, help="payload bytes")
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    alone = measure(args, subscribe=False)
    delivered = measure(args, subscribe=True)
    text = section(args, alone, delivered)
    print(text)
    if not args.no_write:
        write_section("agent-outbox", text)
        print(f"written to {RESULTS}")
    if min(alone["drain_rate"], delivered["drain_rate"]) < TARGET:
        print(f"below the {TARGET:,.0f} msg/s target", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
