"""The ingress's heartbeat: heard on the region's status subject every status_seconds, ready
once its route table is in Caddy (what its /readyz says)."""
import asyncio

from regio_common import bus
from regio_common.region_status import ComponentStatus


async def test_the_ingress_says_it_is_ready_once_caddy_has_its_routes(nc, region, ingress):
    heard: list[ComponentStatus] = []

    async def on_status(msg) -> None:
        heard.append(ComponentStatus.model_validate_json(msg.data))

    sub = await nc.subscribe(bus.status_subject(region, "ingress"), cb=on_status)
    try:
        async with ingress(status_seconds=0.2) as app:
            async with asyncio.timeout(15):
                while not (heard and heard[-1].ready):
                    await asyncio.sleep(0.05)
            await app.state.loader.ready()  # as /readyz says
            count = len(heard)
            await asyncio.sleep(0.5)
            assert len(heard) >= count + 2  # on and on, every status_seconds
    finally:
        await sub.unsubscribe()
    assert {(s.region, s.component) for s in heard} == {(region, "ingress")}
