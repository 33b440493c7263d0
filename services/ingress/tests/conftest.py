"""Fixtures for the ingress against a real Caddy, NATS and Postgres, with small
HTTP servers on loopback standing in for application instances."""
import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from regio_common import bus, db
from regio_common.messages import (
    RoutesApplied,
    RoutesChanged,
    Upstream,
    decode,
    subject_for,
)
from regio_common.processes import ManagedProcess, wait_for_port, wait_for_socket
from regio_common.servers import (
    CADDY_HTTP_SOCKET,
    CADDY_HTTPS_SOCKET,
    caddy_admin_listen,
    caddy_admin_socket,
    caddy_process,
    prepare_caddy,
)
from regio_common.testing.plugin import free_port
from regio_ingress.main import create_app
from regio_ingress.routes import Route
from regio_ingress.routes.repository import RouteRepository
from regio_ingress.settings import Settings

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
SERVICE_TOKEN = "ingress-test-token"


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    # Generous: CI runs every service suite side by side on two cores, and a new host costs a
    # Caddy reload plus the upstream answers' refresh. A passing check returns at once.
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


async def caddy_loaded_once(app) -> None:
    """The starting ingress's load of Caddy is done and recorded (Caddy serves it a moment earlier)."""
    loader = app.state.loader

    async def recorded() -> bool:
        return loader.last_loaded == loader.config

    await _eventually(recorded, timeout=5, what="the ingress's load of caddy")


@pytest.fixture
def eventually():
    """Await ``check()`` until it is true, failing after ``timeout`` seconds."""
    return _eventually


# --- application instances ---------------------------------------------------------


class _InstanceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/sleep/"):  # a slow application: /sleep/<seconds>
            time.sleep(float(self.path.removeprefix("/sleep/")))
        body = json.dumps({"name": self.server.name, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@dataclass
class Instance:
    """An application instance on loopback that answers every request with its own name."""

    name: str
    server: ThreadingHTTPServer
    id: UUID = field(default_factory=uuid4)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    @property
    def upstream(self) -> Upstream:
        return Upstream(instance_id=self.id, address=self.address)


@pytest.fixture
def instance() -> Callable[[str], Instance]:
    started: list[ThreadingHTTPServer] = []

    def start(name: str) -> Instance:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _InstanceHandler)
        server.daemon_threads = True
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return Instance(name, server)

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


# --- Caddy -------------------------------------------------------------------------


@dataclass
class Caddy:
    process: ManagedProcess
    http_port: int
    https_port: int

    @property
    def admin_socket(self) -> Path:
        return caddy_admin_socket(self.process.state_dir)

    @property
    def admin_listen(self) -> str:
        return caddy_admin_listen(self.admin_socket)

    def admin_client(self) -> httpx.AsyncClient:
        """Caddy's admin API, on its private Unix socket."""
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.admin_socket)),
                                 base_url="http://caddy", timeout=15)

    @property
    def http_listen(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def autosave(self) -> Path:
        return self.process.state_dir / "caddy" / "config" / "caddy" / "autosave.json"

    def start(self) -> None:
        self.process.start()
        wait_for_socket(self.admin_socket, 15, process=self.process)
        wait_for_port(self.http_port, 15, process=self.process)

    def stop(self) -> None:
        self.process.stop()

    def restart(self, forget_config: bool = False) -> None:
        """Stop and start again; it resumes the last loaded config unless told to forget it."""
        self.stop()
        if forget_config:
            self.autosave.unlink(missing_ok=True)
        self.start()

    async def get(self, host: str, path: str = "/", **kwargs) -> httpx.Response:
        async with httpx.AsyncClient(base_url=f"http://{self.http_listen}", timeout=15) as client:
            return await client.get(path, headers={"Host": host, **kwargs.pop("headers", {})}, **kwargs)

    async def answer_from(self, host: str) -> str | None:
        """The name of the instance that answered a request for ``host``, or None."""
        try:
            response = await self.get(host)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()["name"]
        except (ValueError, KeyError):  # Caddy before its first load answers 200 with nothing
            return None

    async def serves(self, host: str, name: str) -> bool:
        return await self.answer_from(host) == name


@pytest.fixture
def caddy(tmp_path) -> Caddy:
    http_port, https_port = free_port(), free_port()
    prepare_caddy(tmp_path / "state", http_port, https_port)
    server = Caddy(caddy_process(tmp_path / "state", http_port, https_port), http_port, https_port)
    server.start()
    yield server
    server.stop()


# --- NATS --------------------------------------------------------------------------


@pytest.fixture
def region() -> str:
    return f"t{uuid4().hex[:8]}"


@pytest.fixture
async def nc(nats_url) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_url)
    await bus.ensure_streams(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
def js(nc) -> JetStreamContext:
    return nc.jetstream()


@dataclass
class RegionBus:
    """The region's NATS as the controller sees it: it announces routes, hears them applied."""

    js: JetStreamContext
    region: str
    applied: asyncio.Queue  # RoutesApplied events the ingress published, in order

    async def announce(self, environment_id: UUID, hosts: list[str], instances: list[Instance],
                       revision: int) -> RoutesChanged:
        message = RoutesChanged(environment_id=environment_id, hosts=hosts,
                                upstreams=[i.upstream for i in instances], revision=revision)
        await self.js.publish(message.subject(self.region), message.model_dump_json().encode(),
                              headers=message.headers())
        return message

    async def next_applied(self, timeout: float = 10.0) -> RoutesApplied:
        return await asyncio.wait_for(self.applied.get(), timeout)


@pytest.fixture
async def region_bus(nc, js, region) -> AsyncIterator[RegionBus]:
    queue: asyncio.Queue[RoutesApplied] = asyncio.Queue()

    async def on_message(msg) -> None:
        await queue.put(decode(msg.headers, msg.data))

    sub = await nc.subscribe(subject_for(RoutesApplied, region), cb=on_message)
    yield RegionBus(js, region, queue)
    await sub.unsubscribe()


class NatsRelay:
    """A TCP hop between a NATS client and the server that can be cut and restored: NATS going
    away and coming back, as the client sees it."""

    def __init__(self, target: str):
        parsed = urlsplit(target)
        self.target = (parsed.hostname, parsed.port)
        # The session's URL carries the admin's credentials: the relay's carries them on.
        self._userinfo = parsed.netloc.rpartition("@")[0] + "@" if "@" in parsed.netloc else ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"nats://{self._userinfo}127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _pipe(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self._writers += [client_writer, server_writer]

        async def copy(reader, writer) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(copy(client_reader, server_writer), copy(server_reader, client_writer))



# --- the ingress -------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def database_url(migrated_database) -> str:
    return migrated_database(ALEMBIC_INI, "REGIO_INGRESS_")


@pytest.fixture
def seed(database_url) -> Callable[..., Awaitable[None]]:
    """Put routes into the ingress's table directly, as a previous run of the ingress left them."""

    async def put(*routes: Route) -> None:
        engine = db.make_engine(database_url)
        try:
            async with db.make_sessionmaker(engine)() as session, session.begin():
                for route in routes:
                    await RouteRepository(session).save_if_newer(route)
        finally:
            await engine.dispose()

    return put


@pytest.fixture
async def settings(database_url, session_nats, nats_credentials, region, caddy) -> Settings:
    user, password = (await nats_credentials(region, []))["ingress"]  # the ingress's own, as in a region
    return Settings(
        database_url=database_url,
        nats_url=session_nats.url,
        nats_user=user,
        nats_password=password,
        region=region,
        service_token=SERVICE_TOKEN,
        caddy_admin_socket=caddy.admin_socket,
        http_listen=caddy.http_listen,
        https_listen=f"127.0.0.1:{caddy.https_port}",
        http_socket=CADDY_HTTP_SOCKET,
        https_socket=CADDY_HTTPS_SOCKET,
        access_log_listen=f"127.0.0.1:{free_udp_port()}",
        controller_url=f"http://127.0.0.1:{free_port()}",  # no controller: the ingress keeps its own table
        resync_seconds=0.5,
        dns_listen=f"127.0.0.1:{free_udp_port()}",
        edge_listen=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture
def ingress(settings, js) -> Callable[..., object]:
    """Run the ingress service (its lifespan: loader, subscriber, resync, outbox relay)."""

    @asynccontextmanager
    async def run(**overrides) -> AsyncIterator[FastAPI]:
        app = create_app(settings.model_copy(update=overrides))
        async with app.router.lifespan_context(app):
            yield app

    return run


@pytest.fixture
def api() -> Callable[..., httpx.AsyncClient]:
    """A client of the ingress's HTTP API, presenting the service token unless told otherwise."""

    def client(app: FastAPI, token: str | None = SERVICE_TOKEN) -> httpx.AsyncClient:
        headers = {"X-Regio-Service-Token": token} if token else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress", headers=headers)

    return client
