"""Regions as their users see them: which they may see and put applications in (a region
dedicated to another organisation, and a retired one, exist nowhere for them), which a plan
group allows (the free one: only the regions marked for it), each region's state from its
heartbeats, and site URLs at the region's own ingress port."""
import re
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select, update

from regio_common.db import make_engine, make_sessionmaker
from regio_common.region_status import ComponentStatus
from regio_controlpanel.db.models import Membership, PhysicalRegion, Region, Repository, User
from regio_controlpanel.services import catalogue
from regio_controlpanel.services.region_health import RegionHealth

from .web_client import Browser, new_user

PLAN_GROUPS = "/billing/v3/application-plan-groups/"
ALL = {"page_size": 1000}


async def add_region(settings, *, organisation: str | None = None, free_plan: bool = False, retired: bool = False,
                     site_port: int | None = None, name: str = "Extra", local_sources: bool = False) -> dict:
    """A region as an operator adds one (`python -m regio_controlpanel.regions add`), in a
    physical region of its own, offering the standard services."""
    suffix = uuid.uuid4().hex[:8]
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            physical = PhysicalRegion(name=f"Frankfurt {suffix}", vendor="exoscale", location=f"Frankfurt {suffix}")
            session.add(physical)
            await session.flush()
            region = Region(slug=f"r-{suffix}", name=f"{name} {suffix}", domain=f"r-{suffix}.regio.localhost",
                            physical_region_id=physical.id, free_plan=free_plan, site_port=site_port,
                            # as the seeded one, for the tests' local repositories (and the
                            # organisation's other repositories: so never in a public region)
                            allow_local_repositories=local_sources,
                            organisation_id=uuid.UUID(organisation) if organisation else None,
                            retired_at=datetime.now(UTC) if retired else None)
            session.add(region)
            await session.flush()
            await catalogue.ensure_offered(session, region.id)
            return {"uuid": str(region.id), "slug": region.slug, "name": region.name, "location": physical.location,
                    "domain": region.domain}
    finally:
        await engine.dispose()


async def plan_group(client, name: str, organisation: str | None = None) -> dict:
    params = {**ALL, **({"organisation": organisation} if organisation else {})}
    return next(g for g in (await client.get(PLAN_GROUPS, params=params)).json()["results"] if g["name"] == name)


async def new_application(client, organisation: str, **fields):
    return await client.post("/apps/v3/applications/", json={
        "name": "Placed", "slug": f"placed-{uuid.uuid4().hex[:8]}", "organisation": organisation, **fields})


async def region_ids(client) -> set[str]:
    return {r["uuid"] for r in (await client.get("/apps/v3/regions/", params=ALL)).json()["results"]}


async def test_another_organisations_dedicated_region_cannot_be_seen_or_used(api, rival, seeded, settings):
    theirs = await add_region(settings, organisation=rival.organisation, name="Theirs")

    # For us it does not exist: not listed, not found, in no plan group, refused as unknown.
    assert (await api.get(f"/apps/v3/regions/{theirs['uuid']}/")).status_code == 404
    assert theirs["uuid"] not in await region_ids(api)
    assert theirs["uuid"] not in (await api.get("/apps/v3/regions/", params={"uuid": theirs["uuid"]})).text
    for group in (await api.get(PLAN_GROUPS, params=ALL)).json()["results"]:
        assert theirs["uuid"] not in group["regions"]
        detail = await api.get(f"{PLAN_GROUPS}{group['uuid']}/", params={"organisation": rival.organisation})
        assert theirs["uuid"] not in detail.text
    business = await plan_group(api, "Business")
    refused = await new_application(api, seeded["organisation"], region=theirs["uuid"], plan_group=business["uuid"])
    assert refused.status_code == 400 and refused.json() == {"region": ["Region not found."]}

    # Its organisation sees it, dedicated, and puts applications there on any plan but the free one.
    shown = await rival.get(f"/apps/v3/regions/{theirs['uuid']}/")
    assert shown.status_code == 200 and shown.json()["is_dedicated"] is True
    their_business = await plan_group(rival, "Business", rival.organisation)
    assert theirs["uuid"] in their_business["regions"] and seeded["region"] in their_business["regions"]
    assert theirs["uuid"] not in (await plan_group(rival, "Developer"))["regions"]
    made = await new_application(rival, rival.organisation, region=theirs["uuid"],
                                 plan_group=their_business["uuid"])
    assert made.status_code == 201 and made.json()["region"] == theirs["uuid"], made.text
    assert made.json()["test_status"]["site_url"].startswith(f"http://{made.json()['slug']}-stage.{theirs['domain']}")


async def test_a_retired_region_is_gone_for_everyone(api, rival, seeded, settings):
    public = await add_region(settings, retired=True, free_plan=True, name="Retired")
    dedicated = await add_region(settings, organisation=seeded["organisation"], retired=True, name="Retired")
    for region in (public, dedicated):
        assert (await api.get(f"/apps/v3/regions/{region['uuid']}/")).status_code == 404
        assert region["uuid"] not in await region_ids(api)
        assert region["uuid"] not in (await api.get(PLAN_GROUPS, params=ALL)).text
        refused = await new_application(api, seeded["organisation"], region=region["uuid"])
        assert refused.status_code == 400 and refused.json() == {"region": ["Region not found."]}
        # Nor are the services it offered.
        assert (await api.get("/apps/v3/services/", params={"region": region["uuid"]})).json()["count"] == 0
        assert region["uuid"] not in (await api.get("/apps/v3/services/", params=ALL)).text
    assert public["uuid"] not in await region_ids(rival)
    # A region still in service offers its services, the same way.
    working = await add_region(settings)
    assert (await api.get("/apps/v3/services/", params={"region": working["uuid"]})).json()["count"] == 2


async def test_the_free_plan_deploys_only_to_its_regions(api, seeded, settings):
    paid_only = await add_region(settings, name="Paid only")
    free = await add_region(settings, free_plan=True, name="Free too")
    developer, business = await plan_group(api, "Developer"), await plan_group(api, "Business")
    assert developer["is_free"] is True and business["is_free"] is False
    assert {seeded["region"], free["uuid"]} <= set(developer["regions"])
    assert paid_only["uuid"] not in developer["regions"]
    assert {seeded["region"], free["uuid"], paid_only["uuid"]} <= set(business["regions"])
    # Divio's client offers the plan group's regions, asking for them by id.
    offered = (await api.get("/apps/v3/regions/", params={"uuid": developer["regions"], **ALL})).json()["results"]
    assert [r["uuid"] for r in offered] == developer["regions"] and offered[0]["uuid"] == seeded["region"]
    too_many = await api.get("/apps/v3/regions/", params={"uuid": [str(uuid.uuid4()) for _ in range(101)]})
    assert too_many.status_code == 400 and "uuid" in too_many.text, too_many.text

    refused = await new_application(api, seeded["organisation"], region=paid_only["uuid"],
                                    plan_group=developer["uuid"])
    assert refused.status_code == 400, refused.text
    reason = refused.json()["region"][0]
    assert reason.startswith("The Developer plan deploys only to") and free["name"] in reason
    assert paid_only["name"] not in reason

    in_free = await new_application(api, seeded["organisation"], region=free["uuid"], plan_group=developer["uuid"])
    assert in_free.status_code == 201 and in_free.json()["region"] == free["uuid"]
    defaulted = await new_application(api, seeded["organisation"], plan_group=developer["uuid"])
    assert defaulted.status_code == 201 and defaulted.json()["region"] == seeded["region"]

    paid = await new_application(api, seeded["organisation"], region=paid_only["uuid"], plan_group=business["uuid"])
    assert paid.status_code == 201 and paid.json()["region"] == paid_only["uuid"]
    # Down to the free plan only where the free plan may be.
    path = f"/apps/v3/applications/{paid.json()['uuid']}/"
    downgrade = await api.patch(path, json={"plan_group": developer["uuid"]})
    assert downgrade.status_code == 400 and "Developer plan deploys only to" in downgrade.json()["plan_group"][0]
    assert (await api.get(path)).json()["plan_group"] == business["uuid"]
    assert (await api.patch(f"/apps/v3/applications/{in_free.json()['uuid']}/",
                            json={"plan_group": business["uuid"]})).status_code == 200
    # No plan group is the free one, with its regions: it is no way around them.
    planless = await new_application(api, seeded["organisation"], region=paid_only["uuid"])
    assert planless.status_code == 400 and "Developer plan deploys only to" in planless.json()["region"][0]
    leaving = await api.patch(path, json={"plan_group": None})
    assert leaving.status_code == 400 and "plan_group" in leaving.json(), leaving.text


@asynccontextmanager
async def default_region_not_free(settings, seeded):
    engine = make_engine(settings.database_url)
    statement = update(Region).where(Region.id == uuid.UUID(seeded["region"]))
    try:
        async with engine.begin() as connection:
            await connection.execute(statement.values(free_plan=False))
        yield
    finally:
        async with engine.begin() as connection:
            await connection.execute(statement.values(free_plan=True))
        await engine.dispose()


async def test_without_a_region_the_first_the_plan_allows_when_the_default_is_not(api, seeded, settings):
    await add_region(settings, free_plan=True, name="Aaa free")
    async with default_region_not_free(settings, seeded):
        developer = await plan_group(api, "Developer")
        assert seeded["region"] not in developer["regions"] and developer["regions"]
        made = await new_application(api, seeded["organisation"], plan_group=developer["uuid"])
        assert made.status_code == 201 and made.json()["region"] == developer["regions"][0], made.text


def status(region: str, component: str, ready: bool = True, **details) -> bytes:
    return ComponentStatus(region=region, component=component, ready=ready, sent_at=datetime.now(UTC),
                           details=details).model_dump_json().encode()


@pytest.fixture
def health(app):
    """The control panel's region health, fed by the test (as the heartbeats would feed it).
    Put back by hand: monkeypatch would delete it, as app.state keeps it outside __dict__."""
    heard = app.state.region_health
    app.state.region_health = RegionHealth(status_seconds=5)
    yield app.state.region_health
    app.state.region_health = heard


async def test_regions_show_their_state_from_heartbeats(api, health, seeded, settings):
    quiet, half = await add_region(settings), await add_region(settings)
    local = settings.region
    health.record(f"region.{local}.status.builder", status(local, "builder"))
    health.record(f"region.{local}.status.ingress", status(local, "ingress"))
    health.record(f"region.{local}.status.controller", status(local, "controller", runners=2, runners_ready=1,
                                                              memory_mb=2048, memory_mb_free=1536))
    health.record(f"region.{half['slug']}.status.builder", status(half["slug"], "builder"))
    # A status naming another region than its subject's counts for neither.
    health.record(f"region.{quiet['slug']}.status.builder", status(local, "builder"))

    shown = {r["uuid"]: r for r in (await api.get("/apps/v3/regions/", params=ALL)).json()["results"]}
    online = shown[seeded["region"]]
    assert (online["state"], online["runners"], online["runners_ready"], online["memory_mb_free"]) == \
        ("online", 2, 1, 1536)
    assert online["free_plan"] is True and online["vendor"] == "self-hosted" and online["is_dedicated"] is False
    assert shown[half["uuid"]]["state"] == "degraded"
    assert {k: shown[quiet["uuid"]][k] for k in ("state", "runners", "runners_ready", "memory_mb_free")} == \
        {"state": "offline", "runners": 0, "runners_ready": 0, "memory_mb_free": 0}
    one = (await api.get(f"/apps/v3/regions/{quiet['uuid']}/")).json()
    assert one["state"] == "offline" and one["location"] == quiet["location"] and one["vendor"] == "exoscale"


async def test_site_urls_use_the_regions_own_ingress_port(api, seeded, settings):
    business = await plan_group(api, "Business")
    for port, suffix in ((8899, ":8899"), (None, ""), (80, "")):
        region = await add_region(settings, site_port=port)
        made = await new_application(api, seeded["organisation"], region=region["uuid"], plan_group=business["uuid"])
        assert made.status_code == 201, made.text
        slug = made.json()["slug"]
        assert made.json()["live_status"]["site_url"] == f"http://{slug}.{region['domain']}{suffix}/"
        env = (await api.get(f"/apps/v3/environments/{made.json()['test_status']['uuid']}/")).json()
        assert env["site_url"] == f"http://{slug}-stage.{region['domain']}{suffix}/"


async def organisation_of(settings, email: str) -> str:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return str((await session.execute(select(Membership.organisation_id).join(
                User, User.id == Membership.user_id).where(User.email == email))).scalar_one())
    finally:
        await engine.dispose()


async def repositories_of(settings, organisation: str) -> int:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return (await session.execute(select(func.count()).select_from(Repository).where(
                Repository.organisation_id == uuid.UUID(organisation)))).scalar_one()
    finally:
        await engine.dispose()


@pytest.fixture
async def browser(app, settings):
    """A new user with an organisation of their own, made on the web, signed in (a fresh one:
    the regions dedicated to it are seen by no other test)."""
    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        assert (await b.sign_in(email)).status_code == 303
        made = await b.submit("/web/organisations", "/web/organisations", {"name": "Region pickers"})
        assert made.status_code == 303
        b.organisation = await organisation_of(settings, email)
        yield b


def hear_all_of(health: RegionHealth, region: str) -> None:
    """A region whose builder, controller and ingress are ready, with a ready runner."""
    for component in ("builder", "ingress"):
        health.record(f"region.{region}.status.{component}", status(region, component))
    health.record(f"region.{region}.status.controller", status(region, "controller", runners=1, runners_ready=1,
                                                               memory_mb=1024, memory_mb_free=1024))


async def test_the_web_form_offers_the_regions_the_user_may_use(browser, api, rival, seeded, settings, health):
    ours = await add_region(settings, organisation=browser.organisation, name="Ours", local_sources=True)
    hear_all_of(health, ours["slug"])
    theirs = await add_region(settings, organisation=rival.organisation, name="Theirs")
    retired = await add_region(settings, retired=True, name="Retired")
    paid_only = await add_region(settings, name="Paid only")

    form = (await browser.get("/web/applications/new")).text
    assert ours["uuid"] in form and "dedicated to Region pickers" in form and ours["location"] in form
    assert re.search(rf'value="{ours["uuid"]}">[^<]*· online<', form)
    assert re.search(rf'value="{paid_only["uuid"]}">[^<]*· offline<', form)
    assert paid_only["uuid"] in form and seeded["region"] in form
    assert theirs["uuid"] not in form and retired["uuid"] not in form

    business, developer = await plan_group(api, "Business"), await plan_group(api, "Developer")
    fields = {"organisation": browser.organisation, "name": "Web Placed", "repository_url": "file:///srv/git/p.git"}
    made = await browser.submit("/web/applications/new", "/web/applications",
                                {**fields, "region": ours["uuid"], "plan_group": business["uuid"]})
    assert made.status_code == 303, made.text
    page = (await browser.get(made.headers["location"])).text
    assert ours["name"] in page and ours["location"] in page and "<span data-region-state>online</span>" in page

    # Refused as the API refuses it, with its reason, and nothing made.
    for region, plan, reason in ((theirs["uuid"], business["uuid"], "region: Region not found."),
                                 (paid_only["uuid"], developer["uuid"], "region: The Developer plan deploys only to")):
        refused = await browser.submit("/web/applications/new", "/web/applications",
                                       {**fields, "slug": f"web-{uuid.uuid4().hex[:6]}", "region": region,
                                        "plan_group": plan})
        assert refused.status_code == 400 and reason in refused.text and "<html" in refused.text
    assert await repositories_of(settings, browser.organisation) == 1  # the refused forms' were not kept


async def test_divio_app_create_with_a_region_as_the_client_asks(api, seeded, settings):
    """`divio app create --non-interactive -o ORG -p PLAN -r REGION`: it reads the organisation's
    plan groups, the plan group's regions and those regions by id, then sends nulls for what it
    was not given."""
    second = await add_region(settings, name="Second")
    groups = (await api.get(PLAN_GROUPS, params={"organisation": seeded["organisation"]})).json()["results"]
    business = next(g for g in groups if g["name"] == "Business")
    allowed = (await api.get(f"{PLAN_GROUPS}{business['uuid']}/")).json()["regions"]
    assert second["uuid"] in allowed
    named = (await api.get("/apps/v3/regions/", params={"uuid": allowed, **ALL})).json()["results"]
    assert second["name"] in {r["name"] for r in named}
    made = await new_application(api, seeded["organisation"], plan_group=business["uuid"], region=second["uuid"],
                                 app_template=None, release_commands=None, repository=None, branch="main")
    assert made.status_code == 201 and made.json()["region"] == second["uuid"], made.text
    assert made.json()["release_commands"] == []
