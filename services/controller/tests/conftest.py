"""Fixtures for the controller against real servers: Postgres migrated with alembic and
NATS with the platform's streams and buckets, one fresh region per test.

The controller talks to runner agents and the ingress through NATS, and asks the ingress
over HTTP what is in flight while it drains, so the tests play those two services with
small stand-ins defined here: RunnerAgentDouble, IngressDouble and IngressApiDouble are
test doubles of services/runner-agent and services/ingress, not their code. Application
containers are played by tiny local HTTP servers (AppServer)."""
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from regio_common import bus
from regio_common.messages import (
    Message,
    RolloutFinished,
    RolloutRequested,
    RoutesApplied,
    RoutesChanged,
    decode,
    subject_for,
)
from regio_common.runners import (
    ContainerState,
    DesiredJob,
    JobState,
    ObservedInstance,
    ObservedJob,
    RunnerDesired,
    RunnerHeartbeat,
)
from regio_controller.main import create_app
from regio_controller.messaging.consumers import (
    cancellations_consumer,
    environments_consumer,
    rollouts_consumer,
    routes_applied_consumer,
)
from regio_controller.rollout.worker import cancel_all
from regio_controller.settings import Settings

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
SERVICE_TOKEN = "controller-test-token"
WAIT = 30.0


async def eventually(check: Callable[[], object], timeout: float = WAIT, what: str = "condition"):
    """Polls ``check`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def eventually_async(fetch: Callable[[], Awaitable], accept: Callable[[object], object], what: str,
                           timeout: float = WAIT):
    """Awaits ``fetch()`` until ``accept`` takes its result; returns that result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await fetch()
        if accept(result):
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


# --- the application's containers ------------------------------------------------


class AppServer:
    """Plays an application container: answers every request with ``status`` (after
    ``delay`` seconds), or, with None, accepts connections and never answers."""

    def __init__(self, status: int | None, delay: float = 0.0):
        self.status = status
        self.delay = delay
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()

    @property
    def address(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> "AppServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        self._closing.set()
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.status is None:
                await self._closing.wait()
                return
            await asyncio.sleep(self.delay)
            writer.write(f"HTTP/1.1 {self.status} Status\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                         .encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# --- test doubles of the other services ---------------------------------------------


class RunnerAgentDouble:
    """Test double of services/runner-agent: watches its key in the runner-desired bucket
    and heartbeats every desired instance into the runner-state bucket as running at
    the address its image maps to, and every desired job as exited, without any container."""

    def __init__(self, js: JetStreamContext, region: str, name: str, memory_mb: int, interval: float = 0.2):
        self.js = js
        self.region = region
        self.name = name
        self.memory_mb = memory_mb
        self.interval = interval
        self.addresses: dict[str, str] = {}  # image → address its instances answer at
        self.exit_codes: dict[str, int] = {}  # image → exit code: its instances are reported exited
        self.held: set[str] = set()  # images whose instances are not reported yet (slow start)
        self.desired: list[RunnerDesired] = []  # every desired state received, in order
        self.job_exit_codes: dict[str, int] = {}  # command → its exit code (else 0)
        self.timing_out: set[str] = set()  # commands whose jobs are reported killed at their timeout
        self.running: set[str] = set()  # commands whose jobs are reported running, not yet ended
        self.jobs: list[DesiredJob] = []  # every job it was asked to run, once, in order
        self.labels: dict[str, str] = {}  # placement labels its heartbeats carry
        self.restarts: dict[str, int] = {}  # image → restarts reported for its instances
        self._tasks: list[asyncio.Task] = []

    @property
    def latest(self) -> RunnerDesired | None:
        return self.desired[-1] if self.desired else None

    def desired_instance_ids(self) -> set[UUID]:
        return {i.instance_id for i in self.latest.instances} if self.latest else set()

    async def start(self) -> "RunnerAgentDouble":
        self._desired_kv = await self.js.key_value(bus.runner_desired_bucket(self.region))
        self._state_kv = await self.js.key_value(bus.runner_state_bucket(self.region))
        watcher = await self._desired_kv.watch(self.name)
        self._watcher = watcher
        self._tasks = [asyncio.create_task(self._watch(watcher)), asyncio.create_task(self._heartbeat())]
        await self.beat()
        return self

    async def stop(self) -> None:
        """Stops heartbeating (the runner is lost to the controller); once, however often called."""
        if not self._tasks:
            return
        await cancel_all(self._tasks)
        self._tasks = []
        await self._watcher.stop()

    async def _watch(self, watcher) -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                desired = RunnerDesired.model_validate_json(entry.value)
                self.desired.append(desired)
                known = {j.job_id for j in self.jobs}
                self.jobs.extend(j for j in desired.jobs if j.job_id not in known)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def beat(self) -> None:
        observed = []
        for instance in self.latest.instances if self.latest else []:
            if instance.image in self.held:
                continue
            common = dict(instance_id=instance.instance_id, environment_id=instance.environment_id,
                          release_id=instance.release_id, container_id=f"c-{instance.instance_id.hex[:12]}")
            if instance.image in self.exit_codes:
                observed.append(ObservedInstance(**common, state=ContainerState.EXITED,
                                                 exit_code=self.exit_codes[instance.image]))
            else:
                observed.append(ObservedInstance(**common, state=ContainerState.RUNNING,
                                                 address=self.addresses[instance.image],
                                                 restarts=self.restarts.get(instance.image, 0),
                                                 last_exit="exit code 137, out of memory"
                                                 if self.restarts.get(instance.image) else None))
        jobs = [self._job(j) for j in self.latest.jobs] if self.latest else []
        heartbeat = RunnerHeartbeat(runner=self.name, address="127.0.0.1", memory_mb=self.memory_mb, cpus=2,
                                    labels=self.labels,
                                    desired_revision=self.latest.revision if self.latest else 0,
                                    instances=observed, jobs=jobs)
        await self._state_kv.put(self.name, heartbeat.model_dump_json().encode())


    def _job(self, job: DesiredJob) -> ObservedJob:
        if job.command in self.running:
            return ObservedJob(job_id=job.job_id, state=JobState.RUNNING)
        if job.command in self.timing_out:
            return ObservedJob(job_id=job.job_id, state=JobState.EXITED, exit_code=137, timed_out=True)
        return ObservedJob(job_id=job.job_id, state=JobState.EXITED, exit_code=self.job_exit_codes.get(job.command, 0))


class IngressDouble:
    """Test double of services/ingress: takes every RoutesChanged as applied at once and
    answers RoutesApplied, unless told to stop applying."""

    def __init__(self, nc: Client, js: JetStreamContext, region: str):
        self.nc = nc
        self.js = js
        self.region = region
        self.applying = True
        self.routes: dict[UUID, RoutesChanged] = {}  # applied, by environment
        self.received: list[RoutesChanged] = []

    async def start(self) -> "IngressDouble":
        self._sub = await self.nc.subscribe(subject_for(RoutesChanged, self.region), cb=self._on_routes_changed)
        return self

    async def stop(self) -> None:
        await self._sub.unsubscribe()

    async def _on_routes_changed(self, msg) -> None:
        change = decode(msg.headers, msg.data)
        self.received.append(change)
        if not self.applying:
            return
        current = self.routes.get(change.environment_id)
        if current is None or change.revision > current.revision:
            self.routes[change.environment_id] = change
        applied = RoutesApplied(environment_id=change.environment_id, revision=change.revision)
        await self.js.publish(applied.subject(self.region), applied.model_dump_json().encode(),
                              headers=applied.headers())


class IngressApiDouble:
    """Test double of the ingress's internal GET /internal/v1/upstreams: reports what
    ``in_flight`` holds (address → requests), to callers presenting the service token;
    answers 503, as an ingress whose Caddy is down does, while ``answering`` is False."""

    def __init__(self, token: str):
        self.token = token
        self.in_flight: dict[str, int] = {}
        self.answering = True
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> "IngressApiDouble":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            if head[0].split()[1] != "/internal/v1/upstreams" or headers.get("x-regio-service-token") != self.token:
                status, body = 401, b"[]"
            elif not self.answering:
                status, body = 503, b'{"detail": "caddy admin unreachable"}'
            else:
                status, body = 200, json.dumps([{"address": a, "in_flight": n}
                                                for a, n in self.in_flight.items()]).encode()
            writer.write(f"HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# --- a region for one test -----------------------------------------------------------


class EventLog:
    """Every event published in the region, decoded, in order."""

    def __init__(self):
        self.messages: list[Message] = []

    async def on_message(self, msg) -> None:
        try:
            self.messages.append(decode(msg.headers, msg.data))
        except Exception:
            pass

    def of(self, kind: type[Message], deployment_id: UUID | None = None) -> list:
        return [m for m in self.messages if isinstance(m, kind)
                and (deployment_id is None or getattr(m, "deployment_id", None) == deployment_id)]

    async def finished(self, deployment_id: UUID, timeout: float = WAIT) -> RolloutFinished:
        found = await eventually(lambda: self.of(RolloutFinished, deployment_id), timeout,
                                 f"RolloutFinished of {deployment_id}")
        return found[0]


class Region:
    def __init__(self, name: str, database_url: str, nats_url: str, nc: Client, js: JetStreamContext,
                 nats_credentials: dict[str, tuple[str, str]] | None = None):
        self.name = name
        self.database_url = database_url
        self.nats_url = nats_url
        # component -> (user, password): the controller connects as its own NATS user, as in a region
        self.nats_credentials = nats_credentials or {}
        self.nc = nc
        self.js = js
        self.ingress_api: IngressApiDouble | None = None  # the one the controller asks, unless told others
        self.events = EventLog()
        self.application_id = uuid4()
        self._stoppers: list[Callable] = []

    async def start(self) -> "Region":
        self.ingress_api = await self.ingress_api_double()
        return self

    def settings(self, **overrides) -> Settings:
        user, password = self.nats_credentials.get("controller", (None, None))
        values = dict(region=self.name, database_url=self.database_url, nats_url=self.nats_url,
                      nats_user=user, nats_password=password, service_token=SERVICE_TOKEN, runner_lost_seconds=5, drain_seconds=0.2, reconcile_seconds=0.5,
                      rollout_poll_seconds=0.5, routes_applied_timeout_seconds=5,
                      instance_start_timeout_seconds=15, ingress_urls=[self.ingress_api.url],
                      drain_grace_seconds=10)
        return Settings(**{**values, **overrides})

    @asynccontextmanager
    async def controller(self, settings: Settings | None = None) -> AsyncIterator[httpx.AsyncClient]:
        """The controller app running in-process, with an HTTP client over its ASGI interface."""
        app = create_app(settings or self.settings())
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://controller",
                                         headers={"X-Regio-Service-Token": SERVICE_TOKEN}) as client:
                yield client

    async def runner(self, name: str, memory_mb: int, labels: dict[str, str] | None = None) -> RunnerAgentDouble:
        runner = RunnerAgentDouble(self.js, self.name, name, memory_mb)
        runner.labels = labels or {}
        await runner.start()
        self._stoppers.append(runner.stop)
        return runner

    async def ingress(self) -> IngressDouble:
        ingress = await IngressDouble(self.nc, self.js, self.name).start()
        self._stoppers.append(ingress.stop)
        return ingress

    async def ingress_api_double(self) -> IngressApiDouble:
        api = await IngressApiDouble(SERVICE_TOKEN).start()
        self._stoppers.append(api.stop)
        return api

    async def app_server(self, status: int | None, delay: float = 0.0) -> AppServer:
        server = await AppServer(status, delay).start()
        self._stoppers.append(server.stop)
        return server

    def rollout(self, environment_id: UUID, image: str, **fields) -> RolloutRequested:
        values = dict(deployment_id=uuid4(), application_id=self.application_id, environment_id=environment_id,
                      release_id=uuid4(), image=image, port=8000, sealed_env="sealed-env-the-controller-cannot-read",
                      instances=1, memory_mb=512, hosts=["shop.example.test"], health_check_path="/")
        return RolloutRequested(**{**values, **fields})

    async def request(self, message: RolloutRequested) -> RolloutRequested:
        """Plays the control panel: sends the rollout command."""
        return await self.send(message)

    async def send(self, message: Message) -> Message:
        """Plays the control panel: sends a command."""
        await self.js.publish(message.subject(self.name), message.model_dump_json().encode(),
                              headers=message.headers())
        return message

    async def handled(self, durable: str, stream: str = bus.COMMANDS.name) -> None:
        """Waits until the consumer ``durable`` (of commands, unless told) has taken and acknowledged
        all that was sent."""
        async def info():
            try:
                return await self.js.consumer_info(stream, durable)
            except NotFoundError:
                return None  # the controller has not made it yet

        await eventually_async(info, lambda i: i is not None and i.num_pending == 0 and i.num_ack_pending == 0,
                               f"{durable} to acknowledge every message")

    async def close(self) -> None:
        for stop in reversed(self._stoppers):
            await stop()


@pytest.fixture
async def region(nats_url, session_nats, nats_credentials, migrated_database) -> AsyncIterator[Region]:
    database_url = migrated_database(ALEMBIC_INI, "REGIO_CONTROLLER_")
    name = f"t{uuid4().hex[:8]}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await bus.ensure_buckets(js, name)
    region = await Region(name, database_url, session_nats.url, nc, js, await nats_credentials(name, [])).start()
    events = await nc.subscribe(f"region.{name}.events.>", cb=region.events.on_message)
    try:
        yield region
    finally:
        await region.close()
        await events.unsubscribe()
        for bucket in (bus.runner_desired_bucket(name), bus.runner_state_bucket(name)):
            await js.delete_key_value(bucket)
        for stream, durable in ((bus.COMMANDS.name, rollouts_consumer(name)),
                                (bus.COMMANDS.name, environments_consumer(name)),
                                (bus.EVENTS.name, routes_applied_consumer(name)),
                                (bus.EVENTS.name, cancellations_consumer(name))):
            try:
                await js.delete_consumer(stream, durable)
            except NotFoundError:
                pass
        await nc.drain()
