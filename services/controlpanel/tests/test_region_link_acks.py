"""A region's leaf link carries the acknowledgements of the control panel's consumers of that
region by name (nats_auth.CONTROLPANEL_DURABLES): a consumer missing from that table would
never have its messages acknowledged in a region behind a leaf, and read them for ever."""
from unittest.mock import Mock

from regio_common import nats_auth
from regio_controlpanel.messaging import handlers


def test_every_consumer_the_control_panel_keeps_on_a_region_is_one_its_link_acknowledges():
    commands = handlers.command_consumers(Mock(), Mock(), Mock())
    consumers = handlers.region_consumers(Mock(), commands, "north")
    acknowledged = nats_auth.link_permissions("north").subscribe
    for consumer in consumers:
        assert f"$JS.ACK.{consumer.stream}.{consumer.durable}.>" in acknowledged, consumer.durable
    assert len([p for p in acknowledged if p.startswith("$JS.ACK.")]) == len(consumers)
