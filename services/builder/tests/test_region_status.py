"""The builder's heartbeat: the control panel hears it on the region's status subject, ready
while its database, NATS and Docker Engine answer, not ready when Docker does not."""
import asyncio

from regio_common import bus
from regio_common.region_status import ComponentStatus


async def heard_from(js, region: str, start, **overrides) -> ComponentStatus:
    got: asyncio.Queue[ComponentStatus] = asyncio.Queue()

    async def on_status(msg) -> None:
        got.put_nowait(ComponentStatus.model_validate_json(msg.data))

    sub = await js._nc.subscribe(bus.status_subject(region, "builder"), cb=on_status)
    try:
        async with start(status_seconds=0.2, **overrides):
            first = await asyncio.wait_for(got.get(), 10)
            second = await asyncio.wait_for(got.get(), 10)
    finally:
        await sub.unsubscribe()
    assert (second.sent_at - first.sent_at).total_seconds() < 2  # every status_seconds
    return second


async def test_the_builder_says_it_is_ready(js, region, start_builder):
    status = await heard_from(js, region, start_builder)
    assert status.ready and (status.region, status.component) == (region, "builder")


async def test_a_builder_without_its_docker_engine_says_it_is_not_ready(js, region, start_builder, tmp_path):
    status = await heard_from(js, region, start_builder, docker_host=f"unix://{tmp_path}/no-docker.sock")
    assert not status.ready and status.details["failed"] == ["docker"]
