"""Attacks on hosts: an application, a custom environment or a custom domain that would be
given a host another environment already has (its own organisation's or another's). Each is
refused with a 409 naming the field and the host; nothing is half made."""
import asyncio
import uuid

import pytest

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.models import PhysicalRegion, Region


def new_slug(prefix: str = "h") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def create_app(client, organisation: str, slug: str, region: str | None = None):
    return await client.post("/apps/v3/applications/", json={
        "name": slug, "slug": slug, "organisation": organisation, **({"region": region} if region else {})})


def taken(response, field: str, host: str) -> bool:
    return response.status_code == 409 and response.json() == {
        field: [f"The host {host} already belongs to another environment."]}


async def test_an_application_cannot_take_another_organisations_test_host(api, stranger, seeded, settings):
    shop = new_slug("shop")
    assert (await create_app(api, seeded["organisation"], shop)).status_code == 201
    squatter = await create_app(stranger, stranger.organisation, f"{shop}-stage")
    assert taken(squatter, "slug", f"{shop}-stage.{settings.region_domain}")
    listed = (await stranger.get("/apps/v3/applications/")).json()["results"]
    assert f"{shop}-stage" not in {a["slug"] for a in listed}  # nothing half made


async def test_an_application_whose_test_host_is_taken_is_refused(api, stranger, seeded, settings):
    """The other way round: ``shop-stage`` came first, so ``shop``'s test environment has no host."""
    shop = new_slug("shop")
    assert (await create_app(stranger, stranger.organisation, f"{shop}-stage")).status_code == 201
    assert taken(await create_app(api, seeded["organisation"], shop), "slug", f"{shop}-stage.{settings.region_domain}")


async def test_a_custom_environment_cannot_take_a_host(api, seeded, settings):
    a = new_slug("a")
    app = (await create_app(api, seeded["organisation"], a)).json()
    other = await create_app(api, seeded["organisation"], f"{a}-b")
    assert other.status_code == 201
    # ``a`` + environment ``b`` is ``a-b``: the live host of the application ``a-b``.
    clash = await api.post("/apps/v3/environments/", json={"application": app["uuid"], "slug": "b"})
    assert taken(clash, "slug", f"{a}-b.{settings.region_domain}")
    # ``stage`` is the test environment's own host.
    stage = await api.post("/apps/v3/environments/", json={"application": app["uuid"], "slug": "stage"})
    assert taken(stage, "slug", f"{a}-stage.{settings.region_domain}")
    envs = (await api.get("/apps/v3/environments/", params={"application": app["uuid"]})).json()["results"]
    assert sorted(e["slug"] for e in envs) == ["live", "test"]
    # ... and an application cannot come after a custom environment took its host.
    fine = await api.post("/apps/v3/environments/", json={"application": app["uuid"], "slug": "c"})
    assert fine.status_code == 201, fine.text
    assert taken(await create_app(api, seeded["organisation"], f"{a}-c"), "slug", f"{a}-c.{settings.region_domain}")


async def test_concurrent_creates_of_clashing_slugs_give_the_host_once(api, stranger, seeded):
    """The check before the insert cannot see a request that has not committed: the claim's
    unique key must refuse the second anyway."""
    for _ in range(5):
        shop = new_slug("race")
        one, two = await asyncio.gather(create_app(api, seeded["organisation"], shop),
                                        create_app(stranger, stranger.organisation, f"{shop}-stage"))
        assert sorted([one.status_code, two.status_code]) == [201, 409], (one.text, two.text)


@pytest.fixture
async def trusting_region(settings):
    """A region whose operator vouches for every name under its domain (as `regio up`'s local one)."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        physical = PhysicalRegion(name=f"trusting {uuid.uuid4().hex[:6]}", vendor="test", location="here")
        session.add(physical)
        await session.flush()
        region = Region(slug=new_slug("r"), name="Trusting", domain=f"{new_slug('t')}.regio.localhost",
                        physical_region_id=physical.id, trust_region_domain=True)
        session.add(region)
    await engine.dispose()
    return region


async def test_a_custom_domain_cannot_take_a_default_host_nor_the_other_way(api, stranger, seeded, trusting_region):
    shop = new_slug("shop")
    region = str(trusting_region.id)
    app = (await create_app(api, seeded["organisation"], shop, region)).json()
    theirs = (await create_app(stranger, stranger.organisation, new_slug("their"), region)).json()
    host = f"{shop}.{trusting_region.domain}"
    grab = await stranger.post("/apps/v3/domains/", json={"environment": theirs["live_status"]["uuid"], "domain": host})
    assert taken(grab, "domain", host)
    # A name under the trusted domain that no default host has is theirs at once...
    later = f"later.{trusting_region.domain}"
    added = await stranger.post("/apps/v3/domains/", json={"environment": theirs["live_status"]["uuid"],
                                                           "domain": later})
    assert added.status_code == 201 and added.json()["verification"]["status"] == "verified", added.text
    # ... so an application whose live host it would be is refused.
    assert taken(await create_app(api, seeded["organisation"], "later", region), "slug", later)
    assert app["live_status"]["uuid"]
