"""Fixtures for the agent's outbox and MQTT link: private brokers, subscribers, links."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.mqtt_link import BrokerConfig, MqttLink
from edge_agent.outbox import Outbox
from tests.brokers import Mosquitto, Subscriber


@pytest.fixture()
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start private mosquittos (keyword arguments as for ``Mosquitto``); all stopped after."""
    brokers: list[Mosquitto] = []

    def make(**kw) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(brokers)}", **kw)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture()
def broker(make_broker) -> Mosquitto:
    """One private, non-persistent mosquitto on a free port."""
    return make_broker()


@pytest.fixture()
def make_subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Start plain paho subscribers (arguments as for ``Subscriber``); all stopped after."""
    subscribers: list[Subscriber] = []

    def make(*args, **kw) -> Subscriber:
        subscriber = Subscriber(*args, **kw)
        subscribers.append(subscriber)
        return subscriber.start()

    yield make
    for subscriber in subscribers:
        subscriber.stop()


@pytest.fixture()
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    """An empty outbox with the default caps."""
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


@pytest.fixture()
def make_link(outbox: Outbox) -> Iterator[Callable[..., MqttLink]]:
    """Build (not start) links on ``outbox``; keyword arguments override the defaults."""
    links: list[MqttLink] = []

    def make(cfg: BrokerConfig, **kw) -> MqttLink:
        args = dict(client_id=f"dev-{len(links)}", outbox=outbox, will_topic="t/dev/status",
                    will_payload=b"offline", subscriptions=[], on_message=lambda t, p: None)
        args.update(kw)
        link = MqttLink(cfg, **args)
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop()


@pytest.fixture()
def served_dir(tmp_path: Path):
    """(folder, FileServer): bundles written to the folder are served over HTTP (updates)."""
    from tests.httpserve import FileServer

    folder = tmp_path / "www"
    folder.mkdir()
    server = FileServer(folder)
    yield folder, server
    server.close()


@pytest.fixture(scope="session")
def task_bundle(tmp_path_factory: pytest.TempPathFactory, keypair):
    """Signed bundles of small real models, packed once per session:
    ``task_bundle("yolov8")`` (a detector written with onnx alone), ``task_bundle("generic")``
    (the same with a second output), and, where torch is installed, detectors as other
    tools export them: ``task_bundle("yolov5")``, ``("boxes_scores")``, ``("yolov8",
    "tflite")``."""
    from tests.edge_agent.task_bundles import (
        LABELS,
        foreign_onnx,
        foreign_tflite,
        onnx_detector,
        pack_task,
    )

    folder = tmp_path_factory.mktemp("task-bundles")
    made: dict[tuple[str, str], Path] = {}

    def model_file(layout: str, fmt: str) -> Path:
        if fmt == "onnx" and layout in ("yolov8", "generic"):
            return onnx_detector(folder / f"{layout}.onnx", two_outputs=layout == "generic")
        pytest.importorskip("torch", reason="other tools' detectors are exported with torch")
        return (foreign_onnx if fmt == "onnx" else foreign_tflite)(layout, folder)

    def make(layout: str, fmt: str = "onnx") -> Path:
        if (layout, fmt) not in made:
            model, out = model_file(layout, fmt), folder / f"{layout}-{fmt}.ekb"
            if layout == "generic":
                made[(layout, fmt)] = pack_task(model, out, keypair, "generic",
                                                output_names=["boxes", "scores"])
            else:
                made[(layout, fmt)] = pack_task(model, out, keypair, "detection", layout,
                                                labels=LABELS)
        return made[(layout, fmt)]

    return make
