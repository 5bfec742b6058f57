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
