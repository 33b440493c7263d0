"""Fixtures for the builder against real servers: Postgres migrated with alembic, NATS
with the platform's streams, the local Docker Engine, and git repositories in temp dirs."""
import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID, uuid4

import docker
import httpx
import pytest
from docker.errors import ImageNotFound
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from regio_builder.main import create_app
from regio_builder.settings import Settings
from regio_common import bus
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentLogAppended,
    Message,
    decode,
)

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
SERVICE_TOKEN = "builder-test-token"
WAIT = 90  # seconds; a build of a FROM scratch image takes about one


# --- git repositories ----------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Regio Test", "-c", "user.email=test@regio.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return result.stdout.strip()


class Repository:
    """A local git repository the builder clones through a file:// URL."""

    def __init__(self, path: Path):
        self.path = path
        self.url = path.as_uri()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, content in files.items():
            (self.path / name).write_text(content)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


def _app_files(dockerfile: str | None = None) -> dict[str, str]:
    """A tiny application: a unique file, so no other test's layer cache builds it."""
    files = {"hello.txt": f"hello {uuid4()}\n"}
    files["Dockerfile"] = dockerfile or "FROM scratch\nCOPY hello.txt /\nEXPOSE 8000\n"
    return files


@pytest.fixture
def app_files():
    return _app_files


@pytest.fixture
def make_repository(tmp_path) -> Callable[..., Repository]:
    def make(files: dict[str, str] | None = None, branch: str = "main") -> Repository:
        path = tmp_path / f"repo-{uuid4().hex[:6]}"
        path.mkdir()
        git(path, "init", "-q", "-b", branch)
        repository = Repository(path)
        repository.commit(files if files is not None else _app_files(), "initial")
        return repository

    return make


# --- Docker ----------------------------------------------------------------------


@pytest.fixture
def application_id() -> UUID:
    return uuid4()


@pytest.fixture
def docker_api():
    with docker.APIClient(version="auto") as api:
        yield api


BASE_IMAGES = ("regio/debian:bookworm", "regio/python:3.11")


@pytest.fixture
def base_image(docker_api) -> str:
    """An image with a shell, for builds whose steps run commands (deploy/base-images)."""
    for name in BASE_IMAGES:
        try:
            docker_api.inspect_image(name)
            return name
        except ImageNotFound:
            continue
    pytest.skip("no base image with a shell; run deploy/base-images/build.sh")


@pytest.fixture(autouse=True)
def remove_built_images(application_id, docker_api):
    """Images the builder made for this test's application are removed afterwards."""
    yield
    for image in docker_api.images(name=f"regio-app/{application_id}"):
        docker_api.remove_image(image["Id"], force=True)


# --- NATS --------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def js(nats_url) -> AsyncIterator[JetStreamContext]:
    nc = await bus.connect(nats_url, "builder-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield js
    await nc.drain()


@pytest.fixture
def region() -> str:
    # A region of its own: nothing this test publishes reaches a running region or another test.
    return f"t{uuid4().hex[:8]}"


class Events:
    """Every event of one region, in stream order, read with an ordered JetStream consumer."""

    def __init__(self):
        self.received: list[tuple[int, Message]] = []

    async def on_message(self, msg) -> None:
        self.received.append((msg.metadata.sequence.stream, decode(msg.headers, msg.data)))

    def of(self, kind: type[Message], deployment_id: UUID) -> list[Message]:
        return [m for _, m in self.received if isinstance(m, kind) and m.deployment_id == deployment_id]

    def log(self, deployment_id: UUID) -> list[str]:
        return [line for m in self.of(DeploymentLogAppended, deployment_id) for line in m.lines]

    def sequence(self, message: Message) -> int:
        return next(seq for seq, m in self.received if m.id == message.id)

    async def wait_for(self, kind: type[Message], deployment_id: UUID, timeout: float = WAIT) -> Message:
        async with asyncio.timeout(timeout):
            while not (found := self.of(kind, deployment_id)):
                await asyncio.sleep(0.05)
        return found[0]

    async def finished(self, deployment_id: UUID, timeout: float = WAIT) -> BuildFinished:
        return await self.wait_for(BuildFinished, deployment_id, timeout)

    async def started(self, deployment_id: UUID, timeout: float = WAIT) -> BuildStarted:
        return await self.wait_for(BuildStarted, deployment_id, timeout)


@pytest.fixture
async def events(js, region) -> AsyncIterator[Events]:
    collected = Events()
    sub = await js.subscribe(f"region.{region}.events.>", stream=bus.EVENTS.name, cb=collected.on_message,
                             ordered_consumer=True)
    yield collected
    await sub.unsubscribe()
    await js.purge_stream(bus.EVENTS.name, subject=f"region.{region}.>")


@pytest.fixture
def publish(js, region):
    """Publish a command to this test's region, as the control panel's outbox relay does."""

    async def send(message: Message, dedup: bool = True) -> None:
        headers = message.headers()
        if not dedup:  # as a redelivery after JetStream's duplicate window would arrive
            headers.pop("Nats-Msg-Id")
        await js.publish(message.subject(region), message.model_dump_json().encode(), headers=headers)

    return send


@pytest.fixture
def handled(js, region):
    """Waits until the builder's durable consumer ``consumer`` has taken and acknowledged
    everything published to it so far."""

    async def wait(stream: str, consumer: str, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    info = await js.consumer_info(stream, bus.durable_name(consumer, region))
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        return
                except NotFoundError:  # the builder has not made it yet
                    pass
                await asyncio.sleep(0.05)

    return wait


@pytest.fixture
def build_request(application_id):
    """A BuildRequested of a new deployment of this test's application."""

    def make(repository: Repository | None, mode: str = "AUTO", branch: str = "main",
             url: str | None = None, commit: str | None = None) -> BuildRequested:
        return BuildRequested(deployment_id=uuid4(), application_id=application_id,
                              repository_url=url or repository.url, branch=branch, build_mode=mode,
                              commit=commit)

    return make


# --- the builder --------------------------------------------------------------------


class Builder:
    def __init__(self, settings: Settings, client: httpx.AsyncClient):
        self.settings = settings
        self.client = client

    async def build_record(self, deployment_id: UUID) -> httpx.Response:
        return await self.client.get(f"/internal/v1/builds/{deployment_id}",
                                     headers={"X-Regio-Service-Token": SERVICE_TOKEN})


@pytest.fixture
async def settings(migrated_database, session_nats, nats_credentials, region, tmp_path) -> Settings:
    user, password = (await nats_credentials(region, []))["builder"]  # the builder's own, as in a region
    return Settings(
        region=region,
        database_url=migrated_database(ALEMBIC_INI, "REGIO_BUILDER_"),
        nats_url=session_nats.url,
        nats_user=user,
        nats_password=password,
        service_token=SERVICE_TOKEN,
        work_dir=tmp_path / "work",
        # As in a local region: these tests clone file:// repositories and loopback servers.
        # test_repository_sources.py runs the builder as a production region's.
        allow_local_repositories=True,
        allow_private_repository_hosts=True,
    )


@pytest.fixture
async def start_builder(settings, js, region):
    """Factory: run a builder service (its lifespan: subscriber, worker, outbox relay)."""

    @asynccontextmanager
    async def start(**overrides) -> AsyncIterator[Builder]:
        app = create_app(settings.model_copy(update=overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://builder") as client:
                yield Builder(app.state.settings, client)

    yield start
    try:
        await js.delete_consumer(bus.COMMANDS.name, f"{region}_builder")
    except Exception:  # never started
        pass


@pytest.fixture
async def builder(start_builder) -> AsyncIterator[Builder]:
    async with start_builder() as running:
        yield running
