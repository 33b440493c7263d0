"""Attacks on hosts: an application, a custom environment or a custom domain that would be
given a host another environment already has (its own organisation's or another's). Each is
refused with a 409 naming the field and the host; nothing is half made."""
import asyncio
import uuid

import pytest
from sqlalchemy import text

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.models import PhysicalRegion, Region
from regio_controlpanel.services import hosts


def new_slug(prefix: str = "h") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def create_app(client, organisation: str, slug: str, region: str | None = None, paid: bool = False):
    """On the free plan, or ``paid``: on the Business group's first plan, which allows custom domains."""
    body = {"name": slug, "slug": slug, "organisation": organisation, **({"region": region} if region else {})}
    if paid:
        groups = (await client.get("/billing/v3/application-plan-groups/", params={"page_size": 100})).json()
        body["plan_group"] = next(g["uuid"] for g in groups["results"] if g["name"] == "Business")
    return await client.post("/apps/v3/applications/", json=body)


def taken(response, field: str, host: str) -> bool:
    return response.status_code == 409 and response.json() == {
        field: [f"The host {host} already belongs to another environment."]}


async def test_an_application_cannot_take_another_organisations_test_host(api, rival, seeded, settings):
    shop = new_slug("shop")
    assert (await create_app(api, seeded["organisation"], shop)).status_code == 201
    squatter = await create_app(rival, rival.organisation, f"{shop}-stage")
    assert taken(squatter, "slug", f"{shop}-stage.{settings.region_domain}")
    listed = (await rival.get("/apps/v3/applications/")).json()["results"]
    assert f"{shop}-stage" not in {a["slug"] for a in listed}  # nothing half made


async def test_an_application_whose_test_host_is_taken_is_refused(api, rival, seeded, settings):
    """The other way round: ``shop-stage`` came first, so ``shop``'s test environment has no host."""
    shop = new_slug("shop")
    assert (await create_app(rival, rival.organisation, f"{shop}-stage")).status_code == 201
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


async def test_concurrent_creates_of_clashing_slugs_give_the_host_once(api, rival, seeded):
    """The check before the insert cannot see a request that has not committed: the claim's
    unique key must refuse the second anyway."""
    for _ in range(5):
        shop = new_slug("race")
        one, two = await asyncio.gather(create_app(api, seeded["organisation"], shop),
                                        create_app(rival, rival.organisation, f"{shop}-stage"))
        assert sorted([one.status_code, two.status_code]) == [201, 409], (one.text, two.text)


async def test_a_custom_domain_cannot_take_a_default_host_nor_the_other_way(api, rival, seeded, settings,
                                                                            trusting_region):
    shop = new_slug("shop")
    region = str(trusting_region.id)
    app = (await create_app(api, seeded["organisation"], shop, region)).json()
    theirs = (await create_app(rival, rival.organisation, new_slug("their"), region, paid=True)).json()
    host = f"{shop}.{trusting_region.domain}"
    grab = await rival.post("/apps/v3/domains/", json={"environment": theirs["live_status"]["uuid"], "domain": host})
    assert taken(grab, "domain", host)
    # A name under the trusted domain that no default host has is theirs at once...
    later = f"later.{trusting_region.domain}"
    added = await rival.post("/apps/v3/domains/", json={"environment": theirs["live_status"]["uuid"],
                                                           "domain": later})
    assert added.status_code == 201 and added.json()["verification"]["status"] == "verified", added.text
    # ... so an application whose live host it would be is refused.
    assert taken(await create_app(api, seeded["organisation"], "later", region), "slug", later)
    # A region whose domain is under this one's keeps its names: trust stops at its edge.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        physical = PhysicalRegion(name=f"nested {uuid.uuid4().hex[:6]}", vendor="test", location="here")
        session.add(physical)
        await session.flush()
        session.add(Region(slug=new_slug("n"), name="Nested", domain=f"eu.{trusting_region.domain}",
                           physical_region_id=physical.id))
    await engine.dispose()
    nested = await rival.post("/apps/v3/domains/", json={"environment": theirs["live_status"]["uuid"],
                                                         "domain": f"shop.eu.{trusting_region.domain}"})
    assert nested.status_code == 400 and "region" in nested.json()["domain"][0]
    assert app["live_status"]["uuid"]


async def test_a_deleted_environments_hosts_are_free_again(api, rival, seeded, settings, verified_domain):
    slug = new_slug("gone")
    app = (await create_app(api, seeded["organisation"], slug, paid=True)).json()
    env = (await api.post("/apps/v3/environments/", json={"application": app["uuid"], "slug": "demo"})).json()
    name = f"www.{new_slug()}.example.com"
    await verified_domain(env["uuid"], name)
    assert (await api.delete(f"/apps/v3/environments/{env['uuid']}/")).status_code == 204
    # The custom environment's default host, and its domain, may be given to another.
    assert (await create_app(rival, rival.organisation, f"{slug}-demo")).status_code == 201
    theirs = (await create_app(rival, rival.organisation, new_slug("their"), paid=True)).json()
    assert (await verified_domain(theirs["live_status"]["uuid"], name, client=rival))["domain"] == name
    assert (await api.delete(f"/apps/v3/applications/{app['uuid']}/")).status_code == 204
    assert (await create_app(rival, rival.organisation, f"{slug}-stage")).status_code == 201


async def test_a_host_claimed_by_an_overlapping_check_of_the_same_domain_is_no_conflict(api, paid_application,
                                                                                         settings, dns_zone):
    """Two checks of one domain that overlapped: the one that claims second, whether it finds
    the first's claim committed or meets it at the insert, finds the host its own, not taken;
    another domain of the same environment is still refused it."""
    env_id = uuid.UUID(paid_application["test_status"]["uuid"])
    name = f"www.{new_slug()}.example.com"
    added = await api.post("/apps/v3/domains/", json={"environment": str(env_id), "domain": name})
    domain_id = uuid.UUID(added.json()["uuid"])
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as first, sessions() as second, sessions() as observer:
            await first.begin()
            await hosts.claim(first, env_id, [name], "domain", domain_id=domain_id)
            # The second's check sees nothing yet (the first has not committed); its insert waits.
            await second.begin()
            racing = asyncio.create_task(hosts.claim(second, env_id, [name], "domain", domain_id=domain_id))
            async with asyncio.timeout(20):
                while not (await observer.execute(text(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'INSERT INTO controlpanel.claimed_hosts%'"))).first():
                    await observer.rollback()
                    await asyncio.sleep(0.05)
            await first.commit()
            await racing  # met the first's claim at the insert: its own
            await second.rollback()
            await second.begin()  # and once committed, found by the check before the insert
            await hosts.claim(second, env_id, [name], "domain", domain_id=domain_id)
            with pytest.raises(hosts.HostTaken):
                await hosts.claim(second, env_id, [name], "domain", domain_id=uuid.uuid4())
            await second.rollback()
    finally:
        await engine.dispose()
    assert (await api.delete(f"/apps/v3/domains/{domain_id}/")).status_code == 204  # its claim goes with it
