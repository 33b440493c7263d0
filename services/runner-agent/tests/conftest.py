"""Fixtures for the runner agent against the real Docker Engine, NATS and Postgres."""
import asyncio
import inspect
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import docker
import httpx
import pytest
from docker.errors import ImageNotFound, NotFound
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from regio_common import bus
from regio_common.runners import DesiredInstance, DesiredJob, RunnerDesired, RunnerHeartbeat
from regio_common.sealing import new_key, seal
from regio_runner.docker_engine import LABEL_RUNNER
from regio_runner.main import create_app
from regio_runner.settings import Settings

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
BASE_IMAGE = "regio/python:3.11"
APP_PORT = 8000
SERVICE_TOKEN = "runner-test-token"

# A tiny application: answers every GET with the value of GREETING from its environment.
# It says on stdout and stderr that it starts, prints each path asked for, and /oom
# takes more memory than any test instance may have. With EXIT_CODE set it exits with
# that code as soon as it started: an application that crashes at every start.
APP_SERVER = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/oom":
            hog = b"x" * 1024 ** 3
        body = os.environ.get("GREETING", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print(self.path, flush=True)
print("starting", flush=True)
print("no problems so far", file=sys.stderr, flush=True)
if os.environ.get("EXIT_CODE"):
    sys.exit(int(os.environ["EXIT_CODE"]))
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def app_image(docker_client) -> str:
    """An application image built from the base image (no registry needed)."""
    deadline = time.monotonic() + 900
    while True:  # the base image may still be being built by deploy/base-images/build.sh
        try:
            docker_client.images.get(BASE_IMAGE)
            break
        except ImageNotFound:
            if time.monotonic() > deadline:
                pytest.fail(f"{BASE_IMAGE} is missing: run deploy/base-images/build.sh")
            time.sleep(5)
    tag = f"regio-test/runner-app:{uuid4().hex[:8]}"
    dockerfile = f"FROM {BASE_IMAGE}\nCMD {json.dumps(['python3', '-c', APP_SERVER])}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def app_network(docker_client) -> str:
    """A network of this test session's own, so the default one is left as it was."""
    name = f"regio-test-{uuid4().hex[:8]}"
    yield name
    for network in docker_client.networks.list(names=[name]):
        if network.name == name:
            network.remove()


@dataclass
class Region:
    name: str
    key: str
    nc: Client
    js: JetStreamContext

    async def put_desired(self, runner: str, revision: int, instances: list[DesiredInstance],
                          jobs: list[DesiredJob] = ()) -> None:
        kv = await self.js.key_value(bus.runner_desired_bucket(self.name))
        desired = RunnerDesired(runner=runner, revision=revision, instances=instances, jobs=list(jobs))
        await kv.put(runner, desired.model_dump_json().encode())

    async def heartbeat(self, runner: str) -> RunnerHeartbeat | None:
        kv = await self.js.key_value(bus.runner_state_bucket(self.name))
        try:
            entry = await kv.get(runner)
        except KeyNotFoundError:
            return None
        return RunnerHeartbeat.model_validate_json(entry.value)

    def job(self, image: str, label: str, command: str, timeout_seconds: float = 60, **env: str) -> DesiredJob:
        return DesiredJob(
            job_id=uuid4(),
            deployment_id=uuid4(),
            environment_id=uuid4(),
            release_id=uuid4(),
            label=label,
            image=image,
            command=command,
            sealed_env=seal(self.key, env),
            memory_mb=64,
            cpus=0.25,
            timeout_seconds=timeout_seconds,
        )

    def instance(self, image: str, **env: str) -> DesiredInstance:
        return DesiredInstance(
            instance_id=uuid4(),
            environment_id=uuid4(),
            release_id=uuid4(),
            image=image,
            port=APP_PORT,
            sealed_env=seal(self.key, {"PORT": str(APP_PORT), **env}),
            memory_mb=64,
            cpus=0.25,
        )


@pytest.fixture
async def region(nats_url) -> AsyncIterator[Region]:
    """A region of this test's own: its buckets are new and deleted afterwards."""
    name = f"t{uuid4().hex[:8]}"
    nc = await bus.connect(nats_url, "runner-agent-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await bus.ensure_buckets(js, name)
    yield Region(name, new_key(), nc, js)
    for bucket in (bus.runner_desired_bucket(name), bus.runner_state_bucket(name)):
        await js.delete_key_value(bucket)
    await nc.drain()


@pytest.fixture
def database_url(migrated_database) -> str:
    return migrated_database(ALEMBIC_INI, "REGIO_RUNNER_")


@pytest.fixture
def runners(docker_client) -> list[str]:
    """Runner names a test uses; every container labelled for them is removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUNNER}={name}"}):
            try:
                container.remove(force=True)
            except NotFound:
                pass


@pytest.fixture
def runner_name(runners) -> str:
    name = f"test-runner-{uuid4().hex[:8]}"
    runners.append(name)
    return name


@dataclass
class RunningAgent:
    app: object
    settings: Settings

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://runner")


@pytest.fixture
def start_agent(region, database_url, session_nats, nats_credentials, app_network) -> Callable[..., object]:
    """Factory: ``async with start_agent(name) as agent`` runs a runner agent app for the block,
    with the NATS user of its runner (its own keys only, as in a region)."""

    @asynccontextmanager
    async def start(name: str, **overrides) -> AsyncIterator[RunningAgent]:
        user, password = (await nats_credentials(region.name, [name]))[name]
        settings = Settings(**{
            "name": name,
            "region": region.name,
            "database_url": database_url,
            "nats_url": session_nats.url,
            "nats_user": user,
            "nats_password": password,
            "region_key": region.key,
            "network": app_network,
            "heartbeat_seconds": 0.5,
            "stop_grace_seconds": 1,
            "service_token": SERVICE_TOKEN,
            **overrides,
        })
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            yield RunningAgent(app, settings)

    return start


async def _eventually(check: Callable[[], Awaitable[object] | object], timeout: float = 30.0,
                      interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture
def eventually():
    """``await eventually(check)`` polls ``check`` (sync or async) until it returns something truthy."""
    return _eventually
