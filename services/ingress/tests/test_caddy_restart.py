"""Caddy restarts, or is down for a while: the route table comes back without help."""
from uuid import uuid4

from sqlalchemy import text

from regio_common import db
from regio_ingress.routes import Route

from .conftest import caddy_loaded_once


async def test_routes_survive_a_caddy_restart(seed, ingress, instance, caddy, eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))

        caddy.restart()  # resumes the config the ingress loaded last
        assert await caddy.answer_from("shop.example.com") == "shop"

        caddy.restart(forget_config=True)  # a wiped Caddy: the ingress notices within a second and reloads
        await eventually(lambda: caddy.serves("shop.example.com", "shop"), timeout=5, what="table reloaded")


async def test_a_host_added_while_caddy_is_down_is_served_when_it_is_back(ingress, instance, caddy, region_bus):
    """Caddy's config names no host: a new one is in the ingress's answers, which Caddy asks for
    each request once it is back."""
    environment = uuid4()
    shop = instance("shop")

    async with ingress():
        await region_bus.announce(environment, ["shop.example.com"], [shop], revision=1)
        assert (await region_bus.next_applied()).revision == 1

        caddy.stop()
        await region_bus.announce(environment, ["shop.example.com", "www.shop.example.com"], [shop], revision=2)
        assert (await region_bus.next_applied()).revision == 2

        caddy.start()
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


async def test_a_restarted_ingress_leaves_a_caddy_that_runs_its_table_alone(seed, ingress, instance, caddy,
                                                                           eventually, database_url):
    """Loading the same config again would replace Caddy's listening sockets, resetting the
    connections queued on them: a restart of the ingress must cost its traffic nothing."""
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))
    async with ingress() as app:
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))
        await caddy_loaded_once(app)
        loads = await loads_recorded(database_url)
        assert loads >= 1

    async with ingress() as app:
        await eventually(lambda: _loaded(app), what="the restarted ingress's first round")
        assert await caddy.answer_from("shop.example.com") == "shop"
        assert await loads_recorded(database_url) == loads


async def _loaded(app) -> bool:
    return app.state.loader.hosts.environment_of("shop.example.com") is not None


async def loads_recorded(database_url: str) -> int:
    engine = db.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("select count(*) from ingress.applied_configs"))).scalar_one()
    finally:
        await engine.dispose()
