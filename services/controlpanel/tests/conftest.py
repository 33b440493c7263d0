"""The control panel against a real Postgres (migrated with its own alembic history)
and a real NATS; requests go through an httpx client over the ASGI app."""
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.sealing import new_key
from regio_common.testing.dns import dns_server
from regio_controlpanel.db.models import Membership, Organisation, Region, User
from regio_controlpanel.main import create_app
from regio_controlpanel.seed import seed
from regio_controlpanel.services import tokens
from regio_controlpanel.settings import Settings

# The applications' database cluster and object storage, started per module that asks.
from .region_servers import apps_cluster, storage  # noqa: F401

ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


@pytest.fixture(scope="session")
async def settings(migrated_database, nats_url, session_nats) -> Settings:
    region = f"t{uuid.uuid4().hex[:8]}"
    # The control panel's own NATS user, as in a region; the URL's admin credentials are the tests'.
    user, password = (await session_nats.add_region(region, []))["controlpanel"]
    s = Settings(database_url=migrated_database(ALEMBIC_INI, "REGIO_CONTROLPANEL_"), nats_url=nats_url,
                 nats_user=user, nats_password=password, region=region, secrets_key=new_key(), region_key=new_key(), build_key=new_key(),
                 region_domain=f"{region}.regio.localhost", ingress_port=8780)
    nc = await bus.connect(nats_url, "test-setup")
    await bus.ensure_streams(nc.jetstream())
    await nc.close()
    return s


@pytest.fixture(scope="session")
async def seeded(settings) -> dict:
    return await seed(settings, settings.region, settings.region_domain, "admin@example.test",
                      local_repository_sources=True)


@pytest.fixture(scope="session")
async def dns_zone(settings, seeded):
    """The DNS that custom domains' owners publish their challenges in: the seeded region
    looks TXT records up there (as a region does through its configured resolver)."""
    with dns_server() as zone:
        engine = make_engine(settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE controlpanel.regions SET dns_resolver = :address WHERE id = :id"),
                                     {"address": zone.address, "id": seeded["region"]})
        await engine.dispose()
        yield zone


@pytest.fixture
def verified_domain(api, dns_zone):
    """``await verified_domain(env_id, name, kind)``: a custom domain added as its owner adds one:
    the domain added (pending), its challenge published in DNS, then checked again."""
    async def add(env_id: str, name: str, kind: str = "ALIAS", client: httpx.AsyncClient | None = None) -> dict:
        client = client or api
        added = await client.post("/apps/v3/domains/", json={"environment": env_id, "domain": name, "kind": kind})
        assert added.status_code == 201, added.text
        challenge = added.json()["verification"]
        dns_zone.publish(challenge["record_name"], challenge["record_value"])
        verified = await client.post(f"/apps/v3/domains/{added.json()['uuid']}/verify/")
        assert verified.status_code == 200 and verified.json()["verification"]["status"] == "verified", verified.text
        return verified.json()

    return add


@pytest.fixture(scope="session")
async def app(settings, seeded):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def api(app, seeded):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test",
                                 headers={"Authorization": f"Token {seeded['token']}"}) as client:
        yield client


@asynccontextmanager
async def owner_of_another_organisation(app, settings, email_domain: str, name: str):
    """A new organisation's owner, with a client of their own."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        user = User(email=f"{uuid.uuid4().hex[:6]}@{email_domain}")
        org = Organisation(name=name)
        session.add_all([user, org])
        await session.flush()
        session.add(Membership(organisation_id=org.id, user_id=user.id, role="owner"))
        token = await tokens.create(session, user)
    await engine.dispose()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test",
                                 headers={"Authorization": f"Token {token}"}) as client:
        client.organisation = str(org.id)
        yield client


@pytest.fixture(scope="session")
async def stranger(app, settings):
    """A user of another organisation, with a client of their own."""
    async with owner_of_another_organisation(app, settings, "elsewhere.test", "Elsewhere") as client:
        yield client


@pytest.fixture
async def rival(app, settings):
    """Another organisation's owner, with a client of their own (a fresh one: what they make
    here is seen by no other test)."""
    async with owner_of_another_organisation(app, settings, "rival.test", "Rival") as client:
        yield client


@pytest.fixture
async def trusting_region(settings, seeded, dns_zone):
    """The seeded region, vouching for every name under its domain (as `regio up`'s local one
    does) for one test; its settings are put back after."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        region = await session.get(Region, uuid.UUID(seeded["region"]))
        region.trust_region_domain = True
    yield region
    async with make_sessionmaker(engine)() as session, session.begin():
        region = await session.get(Region, uuid.UUID(seeded["region"]))
        region.trust_region_domain, region.dns_resolver = False, dns_zone.address
    await engine.dispose()


@pytest.fixture
async def member(app, api, settings, seeded):
    """``await member(role, applications=[], environments=[])``: a new user added to the seeded
    organisation through the API, and a client acting as them."""
    engine = make_engine(settings.database_url)
    clients = []

    async def make(role: str, applications: list[str] = (), environments: list[str] = ()) -> httpx.AsyncClient:
        email = f"{role}-{uuid.uuid4().hex[:6]}@example.test"
        response = await api.post("/iam/v3/memberships/", json={
            "organisation": seeded["organisation"], "email": email, "role": role,
            "scopes": {"applications": list(applications), "environments": list(environments)}})
        assert response.status_code == 201, response.text
        async with make_sessionmaker(engine)() as session, session.begin():
            user = await session.get(User, uuid.UUID(response.json()["user"]))
            token = await tokens.create(session, user)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test",
                                   headers={"Authorization": f"Token {token}"})
        client.membership = response.json()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    await engine.dispose()


@pytest.fixture
async def application(api, seeded):
    """A fresh application with a repository, in the seeded organisation."""
    repo = (await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"],
                                                           "url": "file:///srv/git/hello.git"})).json()
    slug = f"app-{uuid.uuid4().hex[:8]}"
    response = await api.post("/apps/v3/applications/", json={
        "name": "Hello", "slug": slug, "organisation": seeded["organisation"], "region": seeded["region"],
        "repository": repo["uuid"], "branch": "main"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def paid_application(api, seeded):
    """As ``application``, on the Business plan group's first plan (Starter): custom domains
    allowed, which the free plan ``application`` is on allows none of."""
    groups = (await api.get("/billing/v3/application-plan-groups/", params={"page_size": 100})).json()["results"]
    business = next(g for g in groups if g["name"] == "Business")
    repo = (await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"],
                                                           "url": "file:///srv/git/hello.git"})).json()
    response = await api.post("/apps/v3/applications/", json={
        "name": "Hello", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "repository": repo["uuid"], "branch": "main", "plan_group": business["uuid"]})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def billing_clock(app):
    """The control panel's billing clock, set (``.set``, ``.advance``) for one test, and seen by
    its month-closing loop too (it reads the clock every round); the real one is put back after."""
    from regio_controlpanel.services.clock import SetClock

    real = app.state.clock
    app.state.clock = SetClock(real.now())
    yield app.state.clock
    app.state.clock = real


@pytest.fixture
async def customer(app, settings):
    """A fresh organisation's owner (``.organisation``): nobody else's applications on its invoices."""
    async with owner_of_another_organisation(app, settings, "customer.test", "Customer") as client:
        yield client
