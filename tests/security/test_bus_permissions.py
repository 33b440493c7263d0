"""The region's NATS lets in only its components, each limited to its own subjects and keys.

A real nats-server runs with the configuration `regio up` writes (nats_auth), and each test
plays one component with that component's credentials: an outsider is not let in, a runner
reaches none of another runner's keys nor the region's commands and logs, and each
component still does its own job. No running region is needed."""
import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from uuid import uuid4

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js.api import ConsumerConfig

from regio_common import bus, nats_auth, runtime_logs
from regio_common.messages import BuildRequested, RolloutRequested, subject_for
from regio_common.processes import free_port, wait_for_port
from regio_common.runners import RunnerHeartbeat
from regio_common.runtime_logs import LogLine
from regio_common.servers import nats_process

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
