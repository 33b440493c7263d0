"""The control panel serving several regions at once, as they are deployed: its NATS is the
hub (the first region's JetStream is its own), a further region runs its own nats-server, a
leaf node of the hub with a JetStream domain of its own, joined by the region's link user.
Both servers are started here from the platform's own configuration (nats_auth), so what
the control panel does for a region crosses the link with exactly the link's permissions."""
import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, text, update

from regio_common import bus, dead_letters, nats_auth, runtime_logs
from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import (
    BackupFilesDeletionRequested,
    BackupRequested,
    BackupRestoreRequested,
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentCancelled,
    InstanceUsageMetered,
    ProvisioningRequested,
    ServiceDataDeletionRequested,
)
from regio_common.processes import free_port, wait_for_port
from regio_common.region_status import ComponentStatus
from regio_common.runtime_logs import LogLine
from regio_common.sealing import new_key
from regio_common.servers import nats_process
from regio_controlpanel.db.models import Application, Region, Service
from regio_controlpanel.domain.backups import backup_folder
from regio_controlpanel.main import create_app
from regio_controlpanel.regions import RegionSpec, add, retire
from regio_controlpanel.seed import seed
from regio_controlpanel.services import region_scope
from regio_controlpanel.services.crypto import Vault
from regio_controlpanel.settings import Settings

from .conftest import ALEMBIC_INI
from .test_deployments import take, wait_for

REFRESH_SECONDS = 0.5


class Servers:
    """The hub and one region's leaf, with every user's password."""

    def __init__(self, state, first: str, region: str):
        self.first, self.region = first, region
        self.passwords: dict[str, str] = {}
        self.hub_port, self.leaf_listen_port, self.leaf_port = free_port(), free_port(), free_port()
        hub_users = [*nats_auth.users(first, [], self.password_of),
                     nats_auth.link_user(region, self.password_of(nats_auth.link_user_name(region)))]
        hub_config, leaf_config = state / "hub" / "nats.conf", state / "leaf" / "nats.conf"
        nats_auth.write_config(hub_config, nats_auth.hub_config(hub_users, f"127.0.0.1:{self.leaf_listen_port}"))
        self.leaf_users = [user for user in nats_auth.users(region, [], self.password_of)]
        nats_auth.write_config(leaf_config, nats_auth.leaf_config(
            region, self.leaf_users, f"nats-leaf://127.0.0.1:{self.leaf_listen_port}",
            nats_auth.link_user_name(region), self.password_of(nats_auth.link_user_name(region)),
            state / "leaf" / "jetstream"))
        self.hub = nats_process(state / "hub", self.hub_port, hub_config)
        self.leaf = nats_process(state / "leaf", self.leaf_port, leaf_config, jetstream_in_config=True)

    def password_of(self, user: str) -> str:
        return self.passwords.setdefault(user, secrets.token_urlsafe(18))

    def url(self, port: int, user: str = nats_auth.ADMIN) -> str:
        return f"nats://{user}:{quote(self.password_of(user), safe='')}@127.0.0.1:{port}"

    def start_leaf(self) -> None:
        self.leaf.start()
        wait_for_port(self.leaf_port, 30, process=self.leaf)


@pytest.fixture(scope="module")
async def servers(tmp_path_factory):
    first, region = f"h{uuid.uuid4().hex[:6]}", f"x{uuid.uuid4().hex[:6]}"
    made = Servers(tmp_path_factory.mktemp("regions"), first, region)
    made.hub.start()
    wait_for_port(made.hub_port, 30, process=made.hub)
    made.start_leaf()
    hub = await bus.connect(made.url(made.hub_port), "test-hub")
    await bus.ensure_streams(hub.jetstream(), regions=[first])
    leaf = await bus.connect(made.url(made.leaf_port), "test-leaf")
    await bus.ensure_streams(leaf.jetstream(), regions=[region])
    made.hub_js, made.leaf_js = hub.jetstream(), leaf.jetstream()
    made.hub_nc, made.leaf_nc = hub, leaf
    yield made
    await hub.close()
    await leaf.close()
    made.leaf.stop()
    made.hub.stop()
    # A refused publish or subscription is only logged: the control panel must need nothing
    # its user, or the region's link, is not allowed.
    for process in (made.hub, made.leaf):
        refused = [line for line in process.log_path.read_text(errors="replace").splitlines() if "Violation" in line]
        assert not refused, "\n".join(refused[:20])


@pytest.fixture(scope="module")
async def cp_settings(servers, migrated_database) -> Settings:
    return Settings(database_url=migrated_database(ALEMBIC_INI, "REGIO_CONTROLPANEL_"),
                    nats_url=f"nats://127.0.0.1:{servers.hub_port}", nats_user=nats_auth.CONTROLPANEL,
                    nats_password=servers.password_of(nats_auth.CONTROLPANEL), region=servers.first,
                    secrets_key=new_key(), region_key=new_key(), build_key=new_key(),
                    region_domain=f"{servers.first}.regio.localhost", region_refresh_seconds=REFRESH_SECONDS,
                    status_seconds=1)


@pytest.fixture(scope="module")
async def cp(cp_settings):
    seeded = await seed(cp_settings, cp_settings.region, cp_settings.region_domain, "admin@example.test",
                        local_repository_sources=True)
    application = create_app(cp_settings)
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://cp.test",
                                     headers={"Authorization": f"Token {seeded['token']}"}) as client:
            client.app, client.seeded, client.settings = application, seeded, cp_settings
            yield client


async def operator(settings: Settings, action, *args) -> dict:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await action(session, *args)
    finally:
        await engine.dispose()


async def add_region(settings: Settings, slug: str, jetstream_domain: str | None) -> dict:
    spec = RegionSpec(slug=slug, name=f"Region {slug}", domain=f"{slug}.regio.localhost", vendor="self-hosted",
                      location="localhost", free_plan=True, jetstream_domain=jetstream_domain)
    return await operator(settings, add, Vault(settings.secrets_key, settings.region_key), spec)


async def application_in(cp, slug: str) -> dict:
    """An application created in the first region, then put in region ``slug`` (so this
    module does not depend on which regions a plan allows)."""
    repo = (await cp.post("/apps/v3/repositories/", json={"organisation": cp.seeded["organisation"],
                                                          "url": "file:///srv/git/hello.git"})).json()
    response = await cp.post("/apps/v3/applications/", json={
        "name": "Hello", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": cp.seeded["organisation"],
        "region": cp.seeded["region"], "repository": repo["uuid"], "branch": "main"})
    assert response.status_code == 201, response.text
    app = response.json()
    if slug != cp.settings.region:
        engine = make_engine(cp.settings.database_url)
        async with make_sessionmaker(engine)() as session, session.begin():
            region = (await session.execute(Region.__table__.select().where(Region.slug == slug))).one()
            await session.execute(update(Application).where(Application.id == uuid.UUID(app["uuid"]))
                                  .values(region_id=region.id))
        await engine.dispose()
    return app


async def deploy(cp, app: dict) -> uuid.UUID:
    response = await cp.post("/apps/v3/deployments/", json={"environment": app["test_status"]["uuid"]})
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["uuid"])


async def test_a_region_added_while_the_control_panel_runs_is_served_through_its_leaf(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    app = await application_in(cp, region)

    deployment = await deploy(cp, app)

    # Its provisioning command went to the region's own server and was handled from there
    # (the control panel's own command consumer on the region's domain); the build request too.
    build = await take(servers.leaf_js, BuildRequested, region, deployment)
    assert build.deployment_id == deployment
    # The region's builder says it started, on the region's own server: the deployment advances.
    started = BuildStarted(deployment_id=deployment, build_id=uuid.uuid4())
    await servers.leaf_js.publish(started.subject(region), started.model_dump_json().encode(),
                                  headers=started.headers())
    await wait_for(cp, deployment, lambda d: d["status"] == "build")
    # Nothing of it was left on the hub, whose streams hold only the first region's messages.
    info = await servers.hub_js.stream_info(bus.COMMANDS.name)
    assert info.config.subjects == [f"region.{servers.first}.commands.>"]


async def test_a_region_whose_link_is_down_holds_up_no_other_region(cp, servers):
    unreachable = f"d{uuid.uuid4().hex[:6]}"
    await add_region(cp.settings, unreachable, jetstream_domain=unreachable)  # no server has this domain
    stuck = await application_in(cp, unreachable)
    stuck_deployment = await deploy(cp, stuck)
    # A region cut off for a while: its messages pile up, more than a relay takes at once.
    runtime = cp.app.state.runtime
    async with runtime.sessions() as session, session.begin():
        for _ in range(150):
            await runtime.outbox.add(session, DeploymentCancelled(deployment_id=uuid.uuid4(), reason="test"), region=unreachable)
    app = await application_in(cp, cp.settings.region)
    started = asyncio.get_running_loop().time()

    deployment = await deploy(cp, app)

    # The first region's commands go out behind the unreachable region's older ones...
    build = await take(servers.hub_js, BuildRequested, cp.settings.region, deployment)
    assert build.deployment_id == deployment
    # ... and its events are handled.
    event = BuildStarted(deployment_id=deployment, build_id=uuid.uuid4())
    await servers.hub_js.publish(event.subject(cp.settings.region), event.model_dump_json().encode(),
                                 headers=event.headers())
    await wait_for(cp, deployment, lambda d: d["status"] == "build")
    assert asyncio.get_running_loop().time() - started < 8
    # The region that cannot be reached keeps its deployment waiting, not failed.
    shown = (await cp.get(f"/apps/v3/deployments/{stuck_deployment}/")).json()
    assert shown["status"] == "provisioning" and shown["ended_at"] is None


async def test_a_region_whose_leaf_stops_and_returns_finishes_its_queue(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    app = await application_in(cp, region)
    servers.leaf.stop()
    try:
        deployment = await deploy(cp, app)
        first_region_app = await application_in(cp, cp.settings.region)
        other = await deploy(cp, first_region_app)
        assert (await take(servers.hub_js, BuildRequested, cp.settings.region, other)).deployment_id == other
    finally:
        servers.start_leaf()
    assert (await take(servers.leaf_js, BuildRequested, region, deployment, timeout=30)).deployment_id == deployment


async def test_a_retired_region_is_no_longer_served(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    app = await application_in(cp, region)
    deployment = await deploy(cp, app)
    await take(servers.leaf_js, BuildRequested, region, deployment)

    await operator(cp.settings, retire, region)
    await asyncio.sleep(3 * REFRESH_SECONDS)

    event = BuildStarted(deployment_id=deployment, build_id=uuid.uuid4())
    await servers.leaf_js.publish(event.subject(region), event.model_dump_json().encode(), headers=event.headers())
    await asyncio.sleep(3 * REFRESH_SECONDS + 2)
    shown = (await cp.get(f"/apps/v3/deployments/{deployment}/")).json()
    assert shown["status"] == "provisioning"
    # Its consumer on the region's server is no longer pulled by anyone.
    consumer = await servers.leaf_js.consumer_info(bus.EVENTS.name, f"controlpanel-events-{region}")
    assert consumer.num_pending >= 1
    assert region not in cp.app.state.region_links.served

    await add_region(cp.settings, region, jetstream_domain=region)  # back in service: the event is handled
    await wait_for(cp, deployment, lambda d: d["status"] == "build", timeout=15)


async def test_a_regions_services_are_believed_only_about_its_own_deployments(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    victim = await deploy(cp, await application_in(cp, cp.settings.region))
    own = await deploy(cp, await application_in(cp, region))
    await take(servers.leaf_js, BuildRequested, region, own)
    # The region's builder, on its own server as its own user, says another region's build is done.
    builder = await bus.connect(f"nats://127.0.0.1:{servers.leaf_port}", "test-rogue-builder", nats_auth.BUILDER,
                                servers.password_of(nats_auth.BUILDER))
    js = builder.jetstream()
    build_id = uuid.uuid4()
    try:
        for message in (BuildStarted(deployment_id=victim, build_id=build_id),
                        BuildFinished(deployment_id=victim, build_id=build_id, success=True, commit="evil",
                                      image="sha256:evil", exposed_port=8000),
                        BuildStarted(deployment_id=own, build_id=uuid.uuid4())):
            await js.publish(message.subject(region), message.model_dump_json().encode(), headers=message.headers())
    finally:
        await builder.close()

    await wait_for(cp, own, lambda d: d["status"] == "build")  # handled in order: the forged ones before
    shown = (await cp.get(f"/apps/v3/deployments/{victim}/")).json()
    assert shown["status"] == "provisioning" and shown["commit"] is None and shown["release"] is None


async def test_commands_written_into_a_regions_stream_act_only_on_that_region(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    victim = await deploy(cp, await application_in(cp, cp.settings.region))
    await take(servers.hub_js, BuildRequested, cp.settings.region, victim)
    own = await deploy(cp, await application_in(cp, region))
    await take(servers.leaf_js, BuildRequested, region, own)

    # Whoever holds the region's server (its admin) writes the control panel's own command there:
    # build another region's deployment again, then one of its own.
    for message in (ProvisioningRequested(deployment_id=victim), ProvisioningRequested(deployment_id=own)):
        await servers.leaf_js.publish(message.subject(region), message.model_dump_json().encode(),
                                      headers=message.headers())

    # Handled in order: once its own deployment is built again, the other one was refused.
    await until_async(lambda: builds_requested(cp, own), 2)
    assert await builds_requested(cp, victim) == 1


async def builds_requested(cp, deployment: uuid.UUID) -> int:
    """How many builds the control panel asked for the deployment (its outbox keeps them a day)."""
    async with cp.app.state.runtime.sessions() as session:
        return await session.scalar(text(
            "SELECT count(*) FROM controlpanel.outbox WHERE headers->>'Regio-Kind' = 'build.requested' "
            "AND convert_from(payload, 'UTF8')::jsonb->>'deployment_id' = :deployment"), {"deployment": str(deployment)})


async def until_async(measure, wanted, timeout: float = 10):
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await measure()) != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"{got}, not {wanted}"
        await asyncio.sleep(0.1)


async def test_what_the_control_panel_cannot_read_from_a_region_is_set_aside_there(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    subject = f"region.{region}.events.builds.started"
    await servers.leaf_js.publish(subject, b"not a message", headers={"Regio-Kind": "build.started",
                                                                       "Nats-Msg-Id": str(uuid.uuid4())})

    # In the region's own dead-letter stream, through the link, where `regio dead-letters --region` lists it.
    deadline = asyncio.get_running_loop().time() + 10
    while not (found := [r for r in await dead_letters.listed(servers.leaf_js, region)
                         if r.message_subject == subject and r.service == "controlpanel"]):
        assert asyncio.get_running_loop().time() < deadline, "not set aside in the region"
        await asyncio.sleep(0.2)
    assert "cannot be read" in found[0].reason


async def test_what_a_command_names_is_placed_in_its_region(cp, servers):
    engine = make_engine(cp.settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            storage = (await session.execute(select(Service.id).join(Region, Region.id == Service.region_id).where(
                Region.slug == cp.settings.region, Service.identifier == "s3"))).scalar_one()
            assert await region_scope.region_of(session, BackupFilesDeletionRequested(
                storage_service_id=storage, prefixes=[backup_folder(uuid.uuid4())])) == cp.settings.region
            assert await region_scope.region_of(session, ServiceDataDeletionRequested(
                service_id=storage, credentials="sealed")) == cp.settings.region
            # Never more than a backup's own folder: a whole bucket named is no one's.
            for prefixes in ([""], ["backups/"], ["backups/../"], [backup_folder(uuid.uuid4()), "other/"]):
                assert await region_scope.region_of(session, BackupFilesDeletionRequested(
                    storage_service_id=storage, prefixes=prefixes)) is None
            for unknown in (ProvisioningRequested(deployment_id=uuid.uuid4()), BackupRequested(backup_id=uuid.uuid4()),
                            BackupRestoreRequested(restore_id=uuid.uuid4())):
                assert await region_scope.region_of(session, unknown) is None
    finally:
        await engine.dispose()


async def test_a_regions_runtime_logs_are_read_on_its_own_server(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    app = await application_in(cp, region)
    environment = app["test_status"]["uuid"]
    line = LogLine(timestamp=datetime.now(UTC), service=runtime_logs.WEB, message="hello from the region")
    await servers.leaf_js.publish(runtime_logs.subject(region, uuid.UUID(environment)), line.model_dump_json().encode())

    page = await cp.get(f"/apps/v3/environments/{environment}/logs/")

    assert page.status_code == 200, page.text
    assert [entry["message"] for entry in page.json()["results"]] == ["hello from the region"]
    servers.leaf.stop()
    try:
        # Kept on the region's server, which does not answer: said so, not an error of ours.
        page = await cp.get(f"/apps/v3/environments/{environment}/logs/")
        assert page.status_code == 503 and region in page.text
    finally:
        servers.start_leaf()


async def status(component: str, region: str, ready: bool = True, **details) -> tuple[bytes, ComponentStatus]:
    message = ComponentStatus(region=region, component=component, ready=ready, details=details)
    return message.model_dump_json().encode(), message


async def test_region_health_from_the_heartbeats_the_regions_send(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    health = cp.app.state.region_health
    assert health.state_of(region).state == "offline"

    # The region's services, on their own server, as their NATS users.
    async def heartbeat_from(component: str, ready: bool = True, claimed_region: str | None = None, **details):
        nc = await bus.connect(servers.url(servers.leaf_port, component), f"test-{component}", None, None)
        data, _ = await status(component, claimed_region or region, ready, **details)
        await nc.publish(bus.status_subject(region, component), data)
        await nc.flush()
        await nc.close()

    controller = {"runners": 2, "runners_ready": 1, "memory_mb": 4096, "memory_mb_free": 3072}
    await heartbeat_from("controller", **controller)
    await heartbeat_from("builder")
    await until(lambda: health.state_of(region).state == "degraded")  # the ingress not heard yet
    await heartbeat_from("ingress")
    state = await until(lambda: health.state_of(region).state == "online" and health.state_of(region))
    assert (state.runners, state.runners_ready, state.memory_mb_free) == (2, 1, 3072)
    assert set(state.components) == {"builder", "controller", "ingress"}

    # A status claiming to be the first region's, sent from this region, counts for neither.
    builder_heard = state.components["builder"]
    await heartbeat_from("builder", claimed_region=cp.settings.region)
    await asyncio.sleep(0.5)
    assert health.state_of(cp.settings.region).state == "offline"
    assert health.state_of(region).components["builder"] == builder_heard
    await heartbeat_from("ingress", ready=False)
    await until(lambda: health.state_of(region).state == "degraded")
    # Nothing heard for three status intervals: offline.
    await until(lambda: health.state_of(region).state == "offline", timeout=10)


async def until(predicate, timeout: float = 5):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := predicate()):
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.05)
    return result


async def test_a_leaf_regions_meters_are_recorded_and_acknowledged_across_its_link(cp, servers):
    region = servers.region
    await add_region(cp.settings, region, jetstream_domain=region)
    app = await application_in(cp, region)
    env = app["test_status"]["uuid"]
    now = datetime.now(UTC).replace(microsecond=0)
    segment = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="runner-1", memory_mb=256,
                                   segment_start=now, segment_end=now + timedelta(seconds=60))
    ack = await servers.leaf_js.publish(segment.subject(region), segment.model_dump_json().encode(),
                                        headers=segment.headers())

    deadline = asyncio.get_running_loop().time() + 15
    while not (events := (await cp.get("/billing/v3/usage-events/", params={"environment": env})).json()["results"]):
        assert asyncio.get_running_loop().time() < deadline, "the leaf region's meter was not recorded"
        await asyncio.sleep(0.1)
    assert [(e["kind"], e["quantity"]) for e in events] == [("instance", "60.000000")]
    # Its acknowledgement crossed the link (else the region's server delivers it again and again).
    while (await servers.leaf_js.consumer_info(bus.EVENTS.name, f"controlpanel-usage-{region}")) \
            .ack_floor.stream_seq < ack.seq:
        assert asyncio.get_running_loop().time() < deadline, "the acknowledgement did not cross the link"
        await asyncio.sleep(0.1)
