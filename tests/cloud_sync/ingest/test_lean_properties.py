"""``LeanProperties`` reads and writes MQTT 5 properties exactly as paho's ``Properties``
(shared tables, a clear that only drops what was set), and ``install`` swaps it into
paho's packet decoder."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_sync.ingest.lean_properties import LeanProperties, install


def _publish_properties(cls):
    props = cls(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.MessageExpiryInterval = 30
    props.UserProperty = [("a", "1"), ("b", "2")]
    props.CorrelationData = b"\x01\x02"
    return props


def test_lean_properties_pack_and_unpack_like_pahos():
    packed = _publish_properties(Properties).pack()
    assert _publish_properties(LeanProperties).pack() == packed
    ours, theirs = LeanProperties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBLISH)
    assert ours.unpack(packed)[1] == theirs.unpack(packed)[1]
    assert ours.json() == theirs.json() and str(ours) == str(theirs)
    ours.unpack(b"\x00")  # an empty block clears what was there
    assert ours.isEmpty() and ours.json() == {}


def test_instances_share_tables_but_not_values():
    a, b = LeanProperties(PacketTypes.PUBLISH), LeanProperties(PacketTypes.PUBLISH)
    assert a.names is b.names
    a.ContentType = "x"
    assert not hasattr(b, "ContentType")


def test_install_swaps_pahos_decoder_properties():
    from paho.mqtt import _packet

    assert install() is True
    assert _packet.Properties is LeanProperties
