"""The bus's streams hold only the regions a server serves, and a connection's inbox lies
under its user's own prefix, on a real nats-server of the test's own (declaring streams with
other subjects on the session's server would change them under every other test)."""
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.errors import NoStreamResponseError

from regio_common import bus
from regio_common.processes import free_port, wait_for_port
from regio_common.servers import nats_process


@pytest.fixture
async def own_js(tmp_path) -> AsyncIterator:
    process = nats_process(tmp_path, free_port())
    process.start()
    try:
        wait_for_port(process.port, 30, process=process)
        nc = await nats.connect(f"nats://127.0.0.1:{process.port}", allow_reconnect=False)
        yield nc.jetstream(timeout=2)
        await nc.close()
    finally:
        process.stop()


async def test_a_servers_streams_capture_only_its_own_regions_commands(own_js):
    await bus.ensure_streams(own_js, regions=["north", "south"])

    assert (await own_js.stream_info(bus.COMMANDS.name)).config.subjects == \
        ["region.north.commands.>", "region.south.commands.>"]
    await own_js.publish("region.south.commands.builds", b"{}")
    # Another region's command is not stored here: that region's own server stores it.
    with pytest.raises(NoStreamResponseError):
        await own_js.publish("region.east.commands.builds", b"{}")


async def test_an_existing_stream_is_brought_to_the_new_regions(own_js):
    await bus.ensure_streams(own_js)
    assert (await own_js.stream_info(bus.EVENTS.name)).config.subjects == ["region.*.events.>"]

    await bus.ensure_streams(own_js, regions=["local"])
    for config in bus.STREAMS:
        subjects = (await own_js.stream_info(config.name)).config.subjects
        assert subjects == [config.subjects[0].replace("region.*.", "region.local.")]
    with pytest.raises(NoStreamResponseError):
        await own_js.publish("region.local-2.events.builds.started", b"{}")


def test_regions_must_be_a_list_of_regions_not_one_string():
    for wrong in ("local", []):
        with pytest.raises(ValueError):
            bus.for_regions(bus.COMMANDS, wrong)


def test_a_status_subject_names_its_region_and_component():
    assert bus.status_subject("local-2", "controller") == "region.local-2.status.controller"
    assert bus.STATUS_SUBJECTS == "region.*.status.>"


async def test_an_inbox_outside_the_users_prefix_is_refused_before_connecting():
    for inbox in ("_INBOX.builder", "_INBOX.controlpanelx.local-2", "_INBOX", "elsewhere.controlpanel"):
        with pytest.raises(ValueError, match="must lie under '_INBOX.controlpanel'"):
            await bus.connect("nats://127.0.0.1:1", "test", "controlpanel", "pw", inbox=inbox)


async def test_a_connection_takes_the_inbox_it_is_given(tmp_path):
    process = nats_process(tmp_path, free_port())
    process.start()
    try:
        wait_for_port(process.port, 30, process=process)
        nc = await bus.connect(f"nats://127.0.0.1:{process.port}", "test", "controlpanel", None,
                               inbox=bus.region_inbox("controlpanel", "local-2"))
        try:
            assert nc.new_inbox().startswith("_INBOX.controlpanel.local-2.")
            async def echo(msg) -> None:
                await msg.respond(msg.data)

            # and replies reach it there
            await nc.subscribe("echo", cb=echo)
            assert (await nc.request("echo", b"hi", timeout=2)).data == b"hi"
        finally:
            await nc.close()
    finally:
        process.stop()
