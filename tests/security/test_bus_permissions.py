"""The region's NATS lets in only its components, each limited to its own subjects and keys.

A real nats-server runs with the configuration `regio up` writes (nats_auth), and each test
plays one component with that component's credentials: an outsider is not let in, a runner
reaches none of another runner's keys nor the region's commands and logs, and each
component still does its own job. No running region is needed."""
import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js.api import ConsumerConfig
from nats.js.errors import NoStreamResponseError

from regio_common import bus, nats_auth, runtime_logs
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    InstanceUsageMetered,
    RolloutRequested,
    TrafficMetered,
    subject_for,
)
from regio_common.processes import free_port, wait_for_port
from regio_common.region_status import ComponentStatus
from regio_common.runners import RunnerHeartbeat
from regio_common.runtime_logs import LogLine
from regio_common.servers import nats_process, nats_store_dir

REGION = "sec"
RUNNERS = ["runner-1", "runner-2"]
DESIRED = bus.runner_desired_bucket(REGION)
STATE = bus.runner_state_bucket(REGION)
QUIET = 1.0  # seconds a refused request is given to come back (it never does)


class Server:
    def __init__(self, url: str, passwords: dict[str, str]):
        self.url = url
        self.passwords = passwords

    async def connect(self, user: str | None, password: str | None = None) -> "Connection":
        connection = Connection()
        connection.nc = await nats.connect(
            self.url, user=user, password=password if password is not None else self.passwords.get(user),
            inbox_prefix=bus.inbox_prefix(user) if user else "_INBOX",
            error_cb=connection.on_error, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)
        return connection


class Connection:
    """A client and the errors the server sent it (a refused publish or subscription
    is told asynchronously, as '-ERR Permissions Violation ...')."""

    def __init__(self):
        self.nc: Client | None = None
        self.errors: list[str] = []

    async def on_error(self, e: Exception) -> None:
        self.errors.append(str(e).lower())

    def js(self):
        return self.nc.jetstream(timeout=QUIET)

    async def refused(self, what: str) -> bool:
        """The server said this connection may not publish or subscribe to ``what``."""
        await self.nc.flush()
        await asyncio.sleep(0.2)
        return any("permissions violation" in e and what.lower() in e for e in self.errors)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    state = tmp_path_factory.mktemp("nats-auth")
    passwords: dict[str, str] = {}

    def password_of(user: str) -> str:
        return passwords.setdefault(user, secrets.token_urlsafe(18))

    config = state / "secrets" / "nats.conf"
    nats_auth.write_config(config, nats_auth.hub_config(nats_auth.users(REGION, RUNNERS, password_of, hollow_fleet=True)))
    process = nats_process(state, free_port(), config)
    process.start()
    wait_for_port(process.port, 30, process=process)
    yield Server(f"nats://127.0.0.1:{process.port}", passwords)
    process.stop()


@pytest.fixture(scope="module")
async def admin(server) -> AsyncIterator[Connection]:
    connection = await server.connect(nats_auth.ADMIN)
    js = connection.nc.jetstream()
    await bus.ensure_streams(js)
    await bus.ensure_buckets(js, REGION)
    yield connection
    await connection.nc.close()


@pytest.fixture
async def connect(server, admin) -> AsyncIterator:
    made: list[Connection] = []

    async def make(user: str | None, password: str | None = None) -> Connection:
        connection = await server.connect(user, password)
        made.append(connection)
        return connection

    yield make
    for connection in made:
        await connection.nc.close()


async def put_desired(js, runner: str, image: str) -> None:
    """As the controller writes it; ``image`` marks whose it is."""
    kv = await js.key_value(DESIRED)
    await kv.put(runner, json.dumps({"runner": runner, "revision": 1, "instances": [], "image": image}).encode())


# --- outsiders -------------------------------------------------------------------------


async def test_a_client_without_credentials_is_not_let_in(connect):
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await connect(None)


async def test_a_wrong_password_is_not_let_in(connect):
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await connect("controller", "guessed")


# --- a runner against what is not its own ---------------------------------------------


async def test_a_runner_reads_its_own_desired_state_but_not_another_runners(connect):
    controller = await connect("controller")
    await put_desired(controller.js(), "runner-1", "mine")
    await put_desired(controller.js(), "runner-2", "another-tenants-image")
    runner = await connect("runner-1")
    kv = await runner.js().key_value(DESIRED)

    assert b"mine" in (await kv.get("runner-1")).value
    with pytest.raises(Exception):
        await kv.get("runner-2")
    assert await runner.refused(f"$kv.{DESIRED}.runner-2")


async def test_a_runner_cannot_watch_the_whole_desired_bucket(connect):
    controller = await connect("controller")
    await put_desired(controller.js(), "runner-2", "another-tenants-image")
    runner = await connect("runner-1")
    kv = await runner.js().key_value(DESIRED)

    with pytest.raises(Exception):
        watcher = await kv.watchall()
        await asyncio.wait_for(watcher.updates(timeout=QUIET), QUIET * 2)
    assert await runner.refused(f"$js.api.consumer.create.kv_{DESIRED}")


async def test_a_runner_cannot_write_desired_state_its_own_or_another_runners(connect):
    controller = await connect("controller")
    await put_desired(controller.js(), "runner-2", "theirs")
    runner = await connect("runner-1")
    kv = await runner.js().key_value(DESIRED)

    for key in ("runner-2", "runner-1"):
        with pytest.raises(Exception):
            await kv.put(key, b'{"runner": "runner-2", "revision": 99, "instances": [], "image": "evil"}')
        assert await runner.refused(f"$kv.{DESIRED}.{key}")
    stored = await (await controller.js().key_value(DESIRED)).get("runner-2")
    assert b"theirs" in stored.value  # what runner-2 will run is still the controller's word


async def test_a_runner_writes_its_own_heartbeat_but_not_another_runners(connect):
    runner = await connect("runner-1")
    kv = await runner.js().key_value(STATE)
    heartbeat = RunnerHeartbeat(runner="runner-1", address="127.0.0.1", memory_mb=1024, cpus=1.0)

    await kv.put("runner-1", heartbeat.model_dump_json().encode())
    with pytest.raises(Exception):
        await kv.put("runner-2", heartbeat.model_copy(update={"runner": "runner-2"}).model_dump_json().encode())
    assert await runner.refused(f"$kv.{STATE}.runner-2")


async def test_a_runner_cannot_subscribe_to_commands_logs_or_another_runners_key(connect):
    runner = await connect("runner-1")
    for subject in (f"region.{REGION}.commands.>", f"region.{REGION}.logs.>", ">",
                    f"$KV.{DESIRED}.runner-2", f"$KV.{DESIRED}.*", f"{bus.inbox_prefix('controller')}.>"):
        await runner.nc.subscribe(subject)
        assert await runner.refused(subject), subject


async def test_a_runner_cannot_set_aside_messages_in_another_services_name(connect):
    """The control panel fails the deployment a dead letter names: only the service that set
    a message aside may say so, under its own name."""
    runner = await connect("runner-1")
    with pytest.raises(Exception):
        await runner.js().publish(f"region.{REGION}.dead-letters.builder", b"{}")
    assert await runner.refused(f"region.{REGION}.dead-letters.builder")
    await runner.js().publish(f"region.{REGION}.dead-letters.runner-agent", b"{}")  # its own

    # which the control panel reads with its durable consumer
    controlpanel = await connect("controlpanel")
    sub = await controlpanel.js().pull_subscribe(f"region.{REGION}.dead-letters.>", stream=bus.DEAD_LETTERS.name,
                                                 durable=bus.durable_name("controlpanel-dead-letters", REGION))
    [received] = await sub.fetch(1, timeout=5)
    await received.ack()
    assert received.subject == f"region.{REGION}.dead-letters.runner-agent"


async def test_a_runner_cannot_read_the_commands_stream(connect):
    runner = await connect("runner-1")
    with pytest.raises(Exception):
        await runner.js().add_consumer(bus.COMMANDS.name, ConsumerConfig(
            name=f"steal-{uuid4().hex[:8]}", filter_subject=f"region.{REGION}.commands.>"))
    with pytest.raises(Exception):
        await runner.js().pull_subscribe(f"region.{REGION}.commands.builds", durable=bus.durable_name("builder", REGION),
                                         stream=bus.COMMANDS.name)


async def test_a_runner_cannot_publish_a_command(connect, admin):
    seen: list = []

    async def spy_on(msg) -> None:
        seen.append(msg)

    spy = await admin.nc.subscribe(f"region.{REGION}.commands.>", cb=spy_on)
    runner = await connect("runner-1")
    rollout = subject_for(RolloutRequested, REGION)

    await runner.nc.publish(rollout, b"{}")
    assert await runner.refused(rollout)
    with pytest.raises(Exception):
        await runner.js().publish(subject_for(BuildRequested, REGION), b"{}")
    await asyncio.sleep(0.2)
    assert seen == []
    await spy.unsubscribe()


async def test_a_runner_meters_its_regions_instances_but_no_other_meter_nor_another_region(connect):
    """What a runner's meter sends is believed as its region's usage: it may not send it as
    another region's, nor as the ingress's traffic or the builder's build time."""
    runner = await connect("runner-1")
    await runner.js().publish(subject_for(InstanceUsageMetered, REGION), b"{}")  # its own
    for subject in (subject_for(InstanceUsageMetered, "another"), subject_for(TrafficMetered, REGION),
                    subject_for(BuildFinished, REGION)):
        await runner.nc.publish(subject, b"{}")
        assert await runner.refused(subject), subject


async def test_a_runner_cannot_read_the_logs_stream_not_even_one_environment(connect, admin):
    """A literal wildcard in a consumer's filter would match any permission that lets a
    runner read one environment's lines: it reads none (it ships, and the control panel reads)."""
    secret_env = uuid4()
    await admin.nc.jetstream().publish(runtime_logs.subject(REGION, secret_env), LogLine(
        timestamp="2026-01-01T00:00:00Z", service="web", message="another tenant's secret").model_dump_json().encode())
    runner = await connect("runner-1")
    for subjects in (f"region.{REGION}.logs.>", f"region.{REGION}.logs.*", runtime_logs.subject(REGION, secret_env)):
        with pytest.raises(Exception):
            await runtime_logs.read(runner.js(), subjects)
        with pytest.raises(Exception):
            await runner.js().add_consumer(bus.LOGS.name, ConsumerConfig(name=f"peek-{uuid4().hex[:8]}",
                                                                       filter_subject=subjects))
    assert await runner.refused(f"$js.api.consumer.create.{bus.LOGS.name}")
    assert await runner.refused(f"$js.api.direct.get.{bus.LOGS.name}")


async def test_a_runner_cannot_list_the_environments_through_the_streams_info(connect, admin):
    """A stream's info asked with a subjects filter lists its subjects, every environment's id
    among the log stream's: neither a runner nor the hollow fleet may ask (they never need to)."""
    secret_env = uuid4()
    await admin.nc.jetstream().publish(runtime_logs.subject(REGION, secret_env), LogLine(
        timestamp="2026-01-01T00:00:00Z", service="web", message="hello").model_dump_json().encode())
    assert str(secret_env) in str((await admin.js().stream_info(bus.LOGS.name, subjects_filter=">")).state.subjects)
    for user in ("runner-1", nats_auth.HOLLOW_FLEET):
        runner = await connect(user)
        for stream in (bus.LOGS.name, bus.EVENTS.name, bus.COMMANDS.name):
            with pytest.raises(Exception):
                await runner.js().stream_info(stream, subjects_filter=">")
            assert await runner.refused(f"$js.api.stream.info.{stream}"), (user, stream)


# --- each component does its job with its own credentials ------------------------------


async def test_the_controller_and_a_runner_exchange_desired_state_and_heartbeats(connect):
    controller, runner = await connect("controller"), await connect("runner-1")
    woken = asyncio.Event()

    async def wake(_msg) -> None:
        woken.set()

    # How the runner agent is woken (Agent.watch_desired): a subscription to its own key.
    await runner.nc.subscribe(f"$KV.{DESIRED}.runner-1", cb=wake)
    await runner.nc.flush()
    heartbeats = await (await controller.js().key_value(STATE)).watchall()  # the controller's HeartbeatWatcher
    while (await heartbeats.updates(timeout=5)) is not None:
        pass

    await put_desired(controller.js(), "runner-1", "app-image")
    await asyncio.wait_for(woken.wait(), 5)
    assert b"app-image" in (await (await runner.js().key_value(DESIRED)).get("runner-1")).value
    heartbeat = RunnerHeartbeat(runner="runner-1", address="127.0.0.1", memory_mb=512, cpus=1.0, desired_revision=1)
    await (await runner.js().key_value(STATE)).put("runner-1", heartbeat.model_dump_json().encode())

    entry = await heartbeats.updates(timeout=5)
    assert RunnerHeartbeat.model_validate_json(entry.value).desired_revision == 1
    await heartbeats.stop()


async def test_runner_logs_are_read_by_the_control_panel(connect):
    runner, controlpanel = await connect("runner-1"), await connect("controlpanel")
    env = uuid4()
    line = LogLine(timestamp="2026-01-01T00:00:00Z", service="web", message="hello")
    await runner.nc.publish(runtime_logs.subject(REGION, env), line.model_dump_json().encode())
    await runner.nc.flush()
    await asyncio.sleep(0.2)

    assert [s.line.message for s in await runtime_logs.read(controlpanel.js(), runtime_logs.subjects(REGION, env))] \
        == ["hello"]


async def test_a_runner_reads_back_its_own_heartbeat_but_not_another_runners(connect):
    """How far its logs were shipped comes back to a restarted agent in its last heartbeat."""
    one, two = await connect("runner-1"), await connect("runner-2")
    heartbeat = RunnerHeartbeat(runner="runner-2", address="127.0.0.1", memory_mb=1, cpus=1.0)
    await (await two.js().key_value(STATE)).put("runner-2", heartbeat.model_dump_json().encode())

    assert (await (await two.js().key_value(STATE)).get("runner-2")).value
    with pytest.raises(Exception):
        await (await one.js().key_value(STATE)).get("runner-2")


async def test_the_controller_and_the_ingress_write_their_lines_into_an_environments_log(connect):
    controller, ingress, controlpanel = await connect("controller"), await connect("ingress"), await connect("controlpanel")
    env = uuid4()
    for who, subject in ((controller, runtime_logs.subject(REGION, env)), (ingress, runtime_logs.access_subject(REGION, env))):
        line = LogLine(timestamp="2026-01-01T00:00:00Z", service="platform", message=f"from {subject}")
        await who.nc.publish(subject, line.model_dump_json().encode())
        await who.nc.flush()
        assert not await who.refused(subject)
    await asyncio.sleep(0.2)
    read = await runtime_logs.read(controlpanel.js(), runtime_logs.subjects(REGION, env))
    assert len(read) == 2


async def test_commands_flow_from_the_control_panel_to_the_services_durables(connect):
    controlpanel, builder = await connect("controlpanel"), await connect("builder")
    message = BuildRequested(deployment_id=uuid4(), application_id=uuid4(), repository_url="https://example.invalid/r",
                             branch="main", build_mode="AUTO")
    await controlpanel.js().publish(message.subject(REGION), message.model_dump_json().encode(),
                                    headers=message.headers())

    # As regio_common.subscriber.Subscriber consumes: the builder's own durable, explicit acks.
    durable = bus.durable_name("builder", REGION)
    sub = await builder.js().pull_subscribe(subject_for(BuildRequested, REGION), durable=durable,
                                            stream=bus.COMMANDS.name)
    [received] = await sub.fetch(1, timeout=5)
    await received.ack()
    assert str(message.deployment_id) in received.data.decode()
    assert not builder.errors

    # and the builder's events go out under its own name
    await builder.js().publish(f"region.{REGION}.events.builds.started", b"{}")
    with pytest.raises(Exception):  # but not someone else's
        await builder.js().publish(f"region.{REGION}.events.routes.changed", b"{}")
    with pytest.raises(Exception):  # nor into another region
        await builder.js().publish("region.elsewhere.events.builds.started", b"{}")


async def test_the_control_panel_serves_every_region(connect, admin):
    """One control panel sends every region's commands and reads every region's events."""
    controlpanel = await connect("controlpanel")
    other = BuildRequested(deployment_id=uuid4(), application_id=uuid4(), repository_url="https://example.invalid/r",
                           branch="main", build_mode="AUTO")
    await controlpanel.js().publish(other.subject("elsewhere"), other.model_dump_json().encode(), headers=other.headers())
    sub = await controlpanel.js().pull_subscribe("region.elsewhere.events.>", stream=bus.EVENTS.name,
                                                 durable=bus.durable_name("controlpanel-events", "elsewhere"))
    await admin.nc.jetstream().publish("region.elsewhere.events.builds.started", b"{}")
    [received] = await sub.fetch(1, timeout=5)
    await received.ack()
    assert not controlpanel.errors


async def test_a_runner_added_later_is_let_in_after_a_reload(tmp_path):
    passwords: dict[str, str] = {}

    def password_of(user: str) -> str:
        return passwords.setdefault(user, secrets.token_urlsafe(18))

    config = tmp_path / "nats.conf"
    nats_auth.write_config(config, nats_auth.hub_config(nats_auth.users(REGION, ["runner-1"], password_of)))
    process = nats_process(tmp_path, free_port(), config)
    process.start()
    try:
        wait_for_port(process.port, 30, process=process)
        server = Server(f"nats://127.0.0.1:{process.port}", passwords)
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await server.connect("runner-3", "not yet")

        assert nats_auth.write_config(config, nats_auth.hub_config(nats_auth.users(REGION, ["runner-1", "runner-3"], password_of)))
        nats_auth.reload(process.pid())
        for _ in range(50):
            try:
                joined = await server.connect("runner-3")
                break
            except (NoServersError, nats.errors.Error, OSError):
                await asyncio.sleep(0.1)
        else:
            pytest.fail("runner-3 was not let in after the reload")
        await joined.nc.close()
    finally:
        process.stop()


def test_runner_names_that_would_be_another_components_user_are_refused():
    for name in ("controller", "regio", "runner.1", "*", "a b", ""):
        with pytest.raises(ValueError):
            nats_auth.runner_permissions(name, REGION)


def test_the_configuration_is_private_and_no_password_is_on_the_command_line(tmp_path):
    """Every local user sees command lines (ps); only NATS's own account reads its configuration."""
    password = secrets.token_urlsafe(18)
    config = tmp_path / "secrets" / "nats.conf"
    nats_auth.write_config(config, nats_auth.hub_config(nats_auth.users(REGION, RUNNERS, lambda _user: password)))

    assert config.stat().st_mode & 0o777 == 0o600
    assert password in config.read_text()
    assert not any(password in arg for arg in nats_process(tmp_path, free_port(), config).argv)


# --- a region behind a leaf node ---------------------------------------------------------
#
# Two real servers, from the configuration functions `regio up` uses: the hub (the control
# panel's, serving the first region, "local", with JetStream of its own) and the server of
# region "north" (JetStream domain "north"), which joins the hub as a leaf node with its link
# user's credentials. "south" is another region whose link user the hub knows. A region's
# machines hold everything in their state directory: the leaf's admin, and the link's password.

HUB, LEAF, OTHER = "local", "north", "south"
REPLY_WAIT = 1.0  # seconds a message that must not arrive is given


def connection_to(url: str, user: str, password: str, inbox: str | None = None,
                  reconnect: bool = False):
    async def make() -> Connection:
        connection = Connection()
        connection.nc = await nats.connect(
            url, user=user, password=password, inbox_prefix=inbox or bus.inbox_prefix(user),
            error_cb=connection.on_error, allow_reconnect=reconnect, connect_timeout=2,
            max_reconnect_attempts=-1 if reconnect else 0, reconnect_time_wait=0.2)
        return connection
    return make()


class Regions:
    def __init__(self, hub, leaf, hub_passwords: dict[str, str], leaf_passwords: dict[str, str]):
        self.hub, self.leaf = hub, leaf
        self.hub_passwords, self.leaf_passwords = hub_passwords, leaf_passwords
        self.made: list[Connection] = []

    @property
    def hub_url(self) -> str:
        return f"nats://127.0.0.1:{self.hub.port}"

    async def on_hub(self, user: str, inbox: str | None = None) -> Connection:
        connection = await connection_to(self.hub_url, user, self.hub_passwords[user], inbox)
        self.made.append(connection)
        return connection

    async def on_leaf(self, user: str) -> Connection:
        connection = await connection_to(f"nats://127.0.0.1:{self.leaf.port}", user, self.leaf_passwords[user])
        self.made.append(connection)
        return connection

    async def control_panel_for(self, region: str) -> Connection:
        """As the control panel reaches a region behind a leaf: its own user, with the region's inbox."""
        connection = await connection_to(self.hub_url, nats_auth.CONTROLPANEL,
                                         self.hub_passwords[nats_auth.CONTROLPANEL],
                                         inbox=bus.region_inbox(nats_auth.CONTROLPANEL, region), reconnect=True)
        self.made.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self.made:
            await connection.nc.close()
        self.made.clear()


async def wait_linked(regions: Regions, timeout: float = 20) -> None:
    """Until the control panel's requests reach the leaf's JetStream through the link."""
    controlpanel = await regions.control_panel_for(LEAF)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                await controlpanel.nc.jetstream(domain=LEAF, timeout=1).account_info()
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await controlpanel.nc.close()
        regions.made.remove(controlpanel)


@pytest.fixture(scope="module")
async def regions(tmp_path_factory) -> AsyncIterator[Regions]:
    hub_passwords: dict[str, str] = {}
    leaf_passwords: dict[str, str] = {}

    def hub_password(user: str) -> str:
        return hub_passwords.setdefault(user, secrets.token_urlsafe(18))

    def leaf_password(user: str) -> str:
        return leaf_passwords.setdefault(user, secrets.token_urlsafe(18))

    leaf_port = free_port()
    hub_state, leaf_state = tmp_path_factory.mktemp("hub"), tmp_path_factory.mktemp("leaf-north")
    hub_config, leaf_config = hub_state / "secrets" / "nats.conf", leaf_state / "secrets" / "nats.conf"
    hub_users = [*nats_auth.users(HUB, [], hub_password),
                 *(nats_auth.link_user(r, hub_password(nats_auth.link_user_name(r))) for r in (LEAF, OTHER))]
    nats_auth.write_config(hub_config, nats_auth.hub_config(hub_users, f"127.0.0.1:{leaf_port}"))
    link = nats_auth.link_user_name(LEAF)
    nats_auth.write_config(leaf_config, nats_auth.leaf_config(
        LEAF, nats_auth.users(LEAF, ["runner-1"], leaf_password), f"nats-leaf://127.0.0.1:{leaf_port}",
        link, hub_passwords[link], nats_store_dir(leaf_state)))
    hub = nats_process(hub_state, free_port(), hub_config)
    leaf = nats_process(leaf_state, free_port(), leaf_config, jetstream_in_config=True)
    hub.start()
    made = Regions(hub, leaf, hub_passwords, leaf_passwords)
    try:
        wait_for_port(hub.port, 30, process=hub)
        leaf.start()
        wait_for_port(leaf.port, 30, process=leaf)
        # Each server's streams take its own region's subjects only.
        for admin, region in ((await made.on_hub(nats_auth.ADMIN), HUB), (await made.on_leaf(nats_auth.ADMIN), LEAF)):
            await bus.ensure_streams(admin.nc.jetstream(), regions=[region])
        await made.close()
        await wait_linked(made)
        yield made
    finally:
        await made.close()
        leaf.stop()
        hub.stop()


@pytest.fixture
async def two_regions(regions) -> AsyncIterator[Regions]:
    yield regions
    await regions.close()


class Spy:
    """An admin's subscription on the hub: what reaches it."""

    def __init__(self):
        self.seen: list[str] = []

    async def on_message(self, msg) -> None:
        self.seen.append(msg.subject)


async def spy_on_hub(regions: Regions, *subjects: str) -> Spy:
    spy = Spy()
    admin = await regions.on_hub(nats_auth.ADMIN)
    for subject in subjects:
        await admin.nc.subscribe(subject, cb=spy.on_message)
    await admin.nc.flush()
    return spy


async def test_a_region_publishes_nothing_into_the_hubs_streams_or_another_regions_subjects(two_regions):
    """The leaf's admin may publish anything on its own server: only the link decides what
    reaches the hub, and it carries its own region's heartbeats and nothing else of this."""
    spy = await spy_on_hub(two_regions, "region.>", "_INBOX.controlpanel.>", "_INBOX.builder.>", "$KV.>")
    hub_admin = await two_regions.on_hub(nats_auth.ADMIN)
    commands_before = (await hub_admin.nc.jetstream().stream_info(bus.COMMANDS.name)).state.messages
    leaf_admin = await two_regions.on_leaf(nats_auth.ADMIN)

    for subject in (subject_for(BuildRequested, HUB), f"region.{HUB}.events.builds.started",
                    f"region.{HUB}.dead-letters.builder", f"region.{OTHER}.status.controller",
                    f"region.{OTHER}.commands.builds", f"region.{HUB}.status.controller",
                    f"{bus.region_inbox(nats_auth.CONTROLPANEL, OTHER)}.forged", f"{bus.inbox_prefix('builder')}.x",
                    "$KV.local-runner-desired.runner-1"):
        await leaf_admin.nc.publish(subject, b"{}")
    await leaf_admin.nc.publish(bus.status_subject(LEAF, "controller"), b"{}")  # its own: crosses
    await leaf_admin.nc.flush()
    await asyncio.sleep(REPLY_WAIT)

    assert spy.seen == [bus.status_subject(LEAF, "controller")]
    assert (await hub_admin.nc.jetstream().stream_info(bus.COMMANDS.name)).state.messages == commands_before


async def test_a_service_of_the_region_cannot_speak_for_another_component(two_regions):
    """Its own server already refuses a status under another service's name."""
    spy = await spy_on_hub(two_regions, bus.STATUS_SUBJECTS)
    builder = await two_regions.on_leaf(nats_auth.BUILDER)

    await builder.nc.publish(bus.status_subject(LEAF, "controller"), b"{}")
    assert await builder.refused(bus.status_subject(LEAF, "controller"))
    await builder.nc.publish(bus.status_subject(OTHER, "builder"), b"{}")
    assert await builder.refused(bus.status_subject(OTHER, "builder"))
    assert spy.seen == []


async def test_the_links_credentials_reach_neither_the_hubs_jetstream_nor_other_traffic(two_regions):
    """The link's password is in the region's state directory: used as a client of the hub, it
    gets the link's permissions and nothing more."""
    link = await two_regions.on_hub(nats_auth.link_user_name(LEAF))
    for request in ("$JS.API.INFO", f"$JS.API.STREAM.INFO.{bus.COMMANDS.name}",
                    f"$JS.API.CONSUMER.MSG.NEXT.{bus.COMMANDS.name}.{bus.durable_name('builder', HUB)}",
                    f"$JS.{OTHER}.API.INFO"):
        with pytest.raises(Exception):
            await link.nc.request(request, b"", timeout=REPLY_WAIT)
        assert await link.refused(request), request
    for subject in ("_INBOX.controlpanel.>", f"{bus.region_inbox(nats_auth.CONTROLPANEL, OTHER)}.>",
                    f"region.{HUB}.commands.>", f"region.{OTHER}.commands.>", f"region.{HUB}.events.>",
                    bus.STATUS_SUBJECTS, ">"):
        await link.nc.subscribe(subject)
        assert await link.refused(subject), subject


async def test_a_region_cannot_read_the_control_panels_replies_for_the_hub_or_another_region(two_regions):
    """A subscription on the leaf to every inbox of the control panel's: its requests to the hub
    and to another region get their answers, and none of them reaches the leaf."""
    leaf_admin = await two_regions.on_leaf(nats_auth.ADMIN)
    stolen = Spy()
    for subject in ("_INBOX.>", f"region.{HUB}.>", f"region.{OTHER}.>", "$JS.API.>"):
        await leaf_admin.nc.subscribe(subject, cb=stolen.on_message)
    await leaf_admin.nc.flush()

    controlpanel = await two_regions.on_hub(nats_auth.CONTROLPANEL)
    assert (await controlpanel.js().stream_info(bus.COMMANDS.name)).config.subjects == [f"region.{HUB}.commands.>"]
    message = BuildRequested(deployment_id=uuid4(), application_id=uuid4(), repository_url="https://example.invalid/r",
                             branch="main", build_mode="AUTO")
    await controlpanel.js().publish(message.subject(HUB), message.model_dump_json().encode(), headers=message.headers())
    for_other = await two_regions.control_panel_for(OTHER)
    with pytest.raises(Exception):  # no server of south's: nobody answers
        await for_other.nc.jetstream(domain=OTHER, timeout=REPLY_WAIT).account_info()
    await asyncio.sleep(REPLY_WAIT)

    assert stolen.seen == []
    assert not controlpanel.errors


async def test_a_region_hears_no_acknowledgement_of_another_regions_consumers(two_regions):
    """The control panel acknowledges what it reads of the hub's own region: a leaf listening
    to every acknowledgement learns neither those consumers' names nor how far they read."""
    leaf_admin = await two_regions.on_leaf(nats_auth.ADMIN)
    heard = Spy()
    await leaf_admin.nc.subscribe("$JS.ACK.>", cb=heard.on_message)
    await leaf_admin.nc.flush()

    hub_admin = await two_regions.on_hub(nats_auth.ADMIN)
    await hub_admin.js().publish(f"region.{HUB}.events.builds.started", b"{}")
    controlpanel = await two_regions.on_hub(nats_auth.CONTROLPANEL)
    reader = await controlpanel.js().pull_subscribe(f"region.{HUB}.events.>", bus.durable_name("controlpanel-events", HUB),
                                                    stream=bus.EVENTS.name)
    [message] = await reader.fetch(1, timeout=5)
    await message.ack_sync()
    await asyncio.sleep(REPLY_WAIT)

    assert heard.seen == []


async def test_the_control_panel_sends_the_regions_commands_and_reads_its_events_through_its_domain(two_regions):
    controlpanel = await two_regions.control_panel_for(LEAF)
    js = controlpanel.nc.jetstream(domain=LEAF, timeout=5)
    builder, controller = await two_regions.on_leaf(nats_auth.BUILDER), await two_regions.on_leaf(nats_auth.CONTROLLER)

    # a command, stored and acknowledged by the region's own stream
    command = BuildRequested(deployment_id=uuid4(), application_id=uuid4(), repository_url="https://example.invalid/r",
                             branch="main", build_mode="AUTO")
    ack = await js.publish(command.subject(LEAF), command.model_dump_json().encode(), headers=command.headers())
    assert (ack.stream, ack.domain) == (bus.COMMANDS.name, LEAF)
    taken = await builder.js().pull_subscribe(subject_for(BuildRequested, LEAF), stream=bus.COMMANDS.name,
                                              durable=bus.durable_name("builder", LEAF))
    [received] = await taken.fetch(1, timeout=5)
    await received.ack()
    assert str(command.deployment_id) in received.data.decode()

    # an event of the region's, pulled by the control panel's durable there and acknowledged
    await controller.js().publish(f"region.{LEAF}.events.environments", b'{"from": "north"}')
    durable = bus.durable_name("controlpanel-events", LEAF)
    events = await js.pull_subscribe(f"region.{LEAF}.events.>", stream=bus.EVENTS.name, durable=durable)
    [event] = await events.fetch(1, timeout=5)
    await event.ack_sync(timeout=5)
    assert event.data == b'{"from": "north"}'
    info = await (await two_regions.on_leaf(nats_auth.ADMIN)).nc.jetstream().consumer_info(bus.EVENTS.name, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert not controlpanel.errors and not builder.errors and not controller.errors


async def test_the_control_panel_hears_the_regions_heartbeats(two_regions):
    controlpanel = await two_regions.on_hub(nats_auth.CONTROLPANEL)
    heard: asyncio.Queue = asyncio.Queue()

    async def on_status(msg) -> None:
        heard.put_nowait((msg.subject, ComponentStatus.model_validate_json(msg.data)))

    await controlpanel.nc.subscribe(bus.STATUS_SUBJECTS, cb=on_status)
    await controlpanel.nc.flush()
    controller = await two_regions.on_leaf(nats_auth.CONTROLLER)
    status = ComponentStatus(region=LEAF, component="controller", ready=True, details={"runners": 1})
    await controller.nc.publish(status.subject, status.encode())

    subject, got = await asyncio.wait_for(heard.get(), 5)
    assert (subject, got) == (bus.status_subject(LEAF, "controller"), status)
    assert not controlpanel.errors and not controller.errors


async def test_a_region_whose_server_is_down_fails_the_control_panels_publish_at_once_and_serves_on_return(
        two_regions):
    controlpanel = await two_regions.control_panel_for(LEAF)
    js = controlpanel.nc.jetstream(domain=LEAF, timeout=5)
    command = BuildRequested(deployment_id=uuid4(), application_id=uuid4(), repository_url="https://example.invalid/r",
                             branch="main", build_mode="AUTO")
    two_regions.leaf.stop()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NoStreamResponseError):  # no responders: nobody stores north's commands now
            await js.publish(command.subject(LEAF), command.model_dump_json().encode(), headers=command.headers())
        assert loop.time() - started < 1.0  # not the 5 s timeout: the outbox relay moves on at once
    finally:
        two_regions.leaf.start()
    wait_for_port(two_regions.leaf.port, 30, process=two_regions.leaf)
    deadline = loop.time() + 20
    while True:  # the leaf joins the hub again by itself
        try:
            ack = await js.publish(command.subject(LEAF), command.model_dump_json().encode(), headers=command.headers())
            break
        except (NoStreamResponseError, nats.errors.TimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert (ack.stream, ack.domain) == (bus.COMMANDS.name, LEAF)
    assert controlpanel.nc.is_connected  # its own connection, to the hub, never dropped


async def test_what_the_control_panel_sets_aside_of_a_regions_messages_is_kept_in_that_regions_stream(
        two_regions):
    """A command the region's stream refuses is set aside there (DeadLetters on the region's
    JetStream), or the control panel's relay for the region would retry it for ever."""
    controlpanel = await two_regions.control_panel_for(LEAF)
    ack = await controlpanel.nc.jetstream(domain=LEAF, timeout=5).publish(
        f"region.{LEAF}.dead-letters.{nats_auth.CONTROLPANEL}", b"{}", headers={"Nats-Msg-Id": uuid4().hex})
    assert (ack.stream, ack.domain) == (bus.DEAD_LETTERS.name, LEAF)
    assert not controlpanel.errors


async def test_the_control_panel_reads_a_regions_runtime_logs_through_its_domain(two_regions):
    runner = await two_regions.on_leaf("runner-1")
    env = uuid4()
    line = LogLine(timestamp="2026-01-01T00:00:00Z", service="web", message="from north")
    await runner.nc.publish(runtime_logs.subject(LEAF, env), line.model_dump_json().encode())
    await runner.nc.flush()
    await asyncio.sleep(0.2)

    controlpanel = await two_regions.control_panel_for(LEAF)
    read = await runtime_logs.read(controlpanel.nc.jetstream(domain=LEAF, timeout=5), runtime_logs.subjects(LEAF, env))
    assert [s.line.message for s in read] == ["from north"]
    assert not controlpanel.errors and not runner.errors


def test_the_links_password_is_in_no_command_line_and_no_log(regions):
    """Only the leaf's configuration (0600) holds it: not its argv (ps shows every user), not
    either server's log, through the link's comings and goings above."""
    link_password = regions.hub_passwords[nats_auth.link_user_name(LEAF)]
    config = regions.leaf.argv[regions.leaf.argv.index("-c") + 1]

    assert Path(config).stat().st_mode & 0o777 == 0o600
    assert link_password in Path(config).read_text()
    for server in (regions.hub, regions.leaf):
        assert not any(link_password in arg for arg in server.argv)
        assert link_password not in server.log_path.read_text(errors="replace")
