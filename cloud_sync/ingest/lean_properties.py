"""paho's MQTT 5 ``Properties`` with its lookup tables built once per process.

paho builds three tables (property names, types, which packets allow which property)
in every ``Properties`` object, and ``clear()`` walks all 27 names with string
replaces; a received PUBLISH gets one. At thousands of messages a second that is a
quarter of ingest's receive loop (measured with cProfile on this project's ingest
benchmark). ``LeanProperties`` shares the tables (paho never changes them after
building) and clears only the properties actually set; everything else, reading and
writing properties included, is paho's own code. ``install`` swaps it in for the
packet decoder paho uses; if a paho release moves that decoder, nothing is swapped and
ingest runs as before.
"""

from __future__ import annotations

import logging

from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)


class LeanProperties(Properties):
    """``Properties`` whose ``types``/``names``/``properties`` tables are shared."""

    _tables: tuple | None = None
    _compressed: tuple[str, ...] = ()

    def __init__(self, packetType: int) -> None:
        tables = LeanProperties._tables
        if tables is None:
            full = Properties(packetType)
            tables = LeanProperties._tables = (full.types, full.names, full.properties)
            LeanProperties._compressed = tuple(n.replace(" ", "") for n in full.names)
        object.__setattr__(self, "packetType", packetType)
        for name, table in zip(("types", "names", "properties"), tables, strict=True):
            object.__setattr__(self, name, table)

    def clear(self) -> None:
        found = self.__dict__
        for name in self._compressed:
            found.pop(name, None)


def install() -> bool:
    """Use ``LeanProperties`` for the packets paho decodes; False when this paho has no
    such decoder module (then nothing changes)."""
    try:
        from paho.mqtt import _packet
    except ImportError:
        return False
    if getattr(_packet, "Properties", None) is Properties:
        _packet.Properties = LeanProperties
    return getattr(_packet, "Properties", None) is LeanProperties
