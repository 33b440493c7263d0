"""Routes announced by the controller over NATS: served, then reported applied."""
import asyncio
from uuid import uuid4

from sqlalchemy import func, select

from regio_ingress.db.models import applied_configs, inbox
from regio_ingress.routes.destination import NOT_FOUND_BODY

from .conftest import NatsRelay, caddy_loaded_once


async def test_an_announced_route_carries_traffic_before_it_is_reported_applied(ingress, instance, caddy,
                                                                               region_bus):
    environment = uuid4()
    blue, green = instance("blue"), instance("green")

    async with ingress():
        await region_bus.announce(environment, ["shop.example.com"], [blue], revision=1)
        applied = await region_bus.next_applied()
        assert (applied.environment_id, applied.revision) == (environment, 1)
        # The controller drains old instances on this word: the route must be live already.
        assert await caddy.answer_from("shop.example.com") == "blue"

        await region_bus.announce(environment, ["shop.example.com"], [green], revision=2)
        applied = await region_bus.next_applied()
        assert (applied.environment_id, applied.revision) == (environment, 2)
        assert [await caddy.answer_from("shop.example.com") for _ in range(3)] == ["green"] * 3


async def test_an_older_revision_does_not_replace_a_newer_one(ingress, instance, caddy, region_bus, eventually, api):
    environment = uuid4()
    old, new = instance("old"), instance("new")

    async with ingress() as app:
        await region_bus.announce(environment, ["shop.example.com"], [new], revision=5)
        assert (await region_bus.next_applied()).revision == 5

        late = await region_bus.announce(environment, ["shop.example.com"], [old], revision=4)

        async def handled() -> bool:
            async with app.state.runtime.sessions() as session:
                found = await session.scalar(select(inbox.c.message_id).where(inbox.c.message_id == late.id))
            return found is not None

        await eventually(handled, what="the late announcement handled")
        await asyncio.sleep(0.3)  # room for a (wrong) reload
        assert [await caddy.answer_from("shop.example.com") for _ in range(3)] == ["new"] * 3
        async with api(app) as client:
            [held] = (await client.get("/internal/v1/routes")).json()
        assert held["revision"] == 5
        assert held["upstreams"] == [{"instance_id": str(new.id), "address": new.address}]
        assert region_bus.applied.empty()


async def test_an_emptied_route_stops_serving_its_hosts_and_is_reported_applied(ingress, instance, caddy,
                                                                              region_bus):
    # What the controller announces when an environment is deleted: no hosts, no upstreams.
    retired, kept = uuid4(), uuid4()
    shop, blog = instance("shop"), instance("blog")

    async with ingress():
        await region_bus.announce(retired, ["shop.example.com"], [shop], revision=3)
        await region_bus.announce(kept, ["blog.example.com"], [blog], revision=1)
        assert {(await region_bus.next_applied()).environment_id for _ in range(2)} == {retired, kept}
        assert await caddy.answer_from("shop.example.com") == "shop"

        await region_bus.announce(retired, [], [], revision=4)
        applied = await region_bus.next_applied()

        # The controller goes on once the hosts are gone: they must be gone from Caddy already.
        assert (applied.environment_id, applied.revision) == (retired, 4)
        response = await caddy.get("shop.example.com")
        assert (response.status_code, response.text) == (404, NOT_FOUND_BODY)
        assert await caddy.answer_from("blog.example.com") == "blog"


async def test_a_route_with_a_bad_host_is_refused_without_holding_up_others(ingress, instance, caddy, region_bus):
    shop = instance("shop")

    async with ingress():
        await region_bus.announce(uuid4(), ["{http.request.host}"], [shop], revision=1)
        good = await region_bus.announce(uuid4(), ["shop.example.com"], [shop], revision=1)

        applied = await region_bus.next_applied()
        assert applied.environment_id == good.environment_id
        assert await caddy.answer_from("shop.example.com") == "shop"
        assert (await caddy.get("anything.example.com")).status_code == 404


async def test_a_revision_announced_again_is_reported_applied_again(ingress, instance, caddy, region_bus):
    environment = uuid4()
    shop = instance("shop")

    async with ingress():
        await region_bus.announce(environment, ["shop.example.com"], [shop], revision=1)
        assert (await region_bus.next_applied()).revision == 1

        await region_bus.announce(environment, ["shop.example.com"], [shop], revision=1)
        again = await region_bus.next_applied()

    assert (again.environment_id, again.revision) == (environment, 1)


async def test_new_hosts_are_served_without_loading_anything_into_caddy(ingress, instance, caddy, region_bus):
    """A Caddy load ends its old server, closing the kept-alive connections a client may just be
    sending a request into: new domains must never cause one."""
    environments = [uuid4() for _ in range(8)]
    shop = instance("shop")

    async with ingress() as app:
        await caddy_loaded_once(app)
        async with app.state.runtime.sessions() as session:
            loads_before = await session.scalar(select(func.count()).select_from(applied_configs))

        for n, environment in enumerate(environments):
            await region_bus.announce(environment, [f"shop{n}.example.com"], [shop], revision=1)
        reported = {(await region_bus.next_applied()).environment_id for _ in environments}

        async with app.state.runtime.sessions() as session:
            loads = await session.scalar(select(func.count()).select_from(applied_configs)) - loads_before
        assert reported == set(environments)
        assert all([await caddy.answer_from(f"shop{n}.example.com") == "shop" for n in range(8)])

    assert loads == 0


async def test_caddy_serves_the_last_table_while_nats_is_unreachable(ingress, instance, caddy, region_bus, nats_url,
                                                                     eventually):
    environment = uuid4()
    shop, blog = instance("shop"), instance("blog")
    relay = NatsRelay(nats_url)
    await relay.open()
    async with ingress(nats_url=relay.url):
        await region_bus.announce(environment, ["shop.example.com"], [shop], revision=1)
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))

        await relay.cut()
        await asyncio.sleep(2)  # longer than the resync interval and Caddy's upstream refresh
        assert [await caddy.answer_from("shop.example.com") for _ in range(5)] == ["shop"] * 5

        # What was announced meanwhile is taken once NATS is back.
        await region_bus.announce(uuid4(), ["blog.example.com"], [blog], revision=1)
        await relay.open()
        await eventually(lambda: caddy.serves("blog.example.com", "blog"), what="the route announced meanwhile")
        assert await caddy.answer_from("shop.example.com") == "shop"
    await relay.cut()
