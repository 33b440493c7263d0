"""Caddy restarts, or is down for a while: the route table comes back without help."""
import asyncio
from uuid import uuid4

from regio_ingress.routes import Route


async def test_routes_survive_a_caddy_restart(seed, ingress, instance, caddy, eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))

        caddy.restart()  # resumes the config the ingress loaded last
        assert await caddy.answer_from("shop.example.com") == "shop"

        caddy.restart(forget_config=True)  # a wiped Caddy: the resync notices and reloads
        await eventually(lambda: caddy.serves("shop.example.com", "shop"), timeout=5, what="table reloaded")


async def test_a_host_added_while_caddy_is_down_is_applied_when_it_is_back(ingress, instance, caddy, region_bus):
    environment = uuid4()
    shop = instance("shop")

    async with ingress():
        await region_bus.announce(environment, ["shop.example.com"], [shop], revision=1)
        assert (await region_bus.next_applied()).revision == 1

        caddy.stop()
        await region_bus.announce(environment, ["shop.example.com", "www.shop.example.com"], [shop], revision=2)
        await asyncio.sleep(1.5)
        assert region_bus.applied.empty()  # not live, so not reported

        caddy.start()
        applied = await region_bus.next_applied(timeout=15)
        assert applied.revision == 2
        assert await caddy.answer_from("www.shop.example.com") == "shop"


async def test_instances_switched_while_caddy_is_down_are_the_ones_it_serves_when_back(ingress, instance, caddy,
                                                                                      region_bus):
    environment = uuid4()
    blue, green = instance("blue"), instance("green")

    async with ingress():
        await region_bus.announce(environment, ["shop.example.com"], [blue], revision=1)
        assert (await region_bus.next_applied()).revision == 1

        caddy.stop()
        await region_bus.announce(environment, ["shop.example.com"], [green], revision=2)
        # Caddy asks the ingress for the instances, it is not told them: no request can reach blue any more.
        assert (await region_bus.next_applied()).revision == 2

        caddy.start()
        assert await caddy.answer_from("shop.example.com") == "green"
