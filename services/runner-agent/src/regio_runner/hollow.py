"""Hollow runners: for scale tests and benchmarks only, never for applications.

A hollow runner agent does everything a runner agent does (reads its desired state, plans,
opens the sealed environments, records its containers, heartbeats) except run containers:
its engine keeps them in memory. An instance is running the moment it is started, and
"publishes" the port of one small HTTP server shared by every hollow container of the
process, which answers 200 to any GET, so the controller's checks of a new instance pass. A
job exits 0 the moment it starts. Nothing prints anything.

``REGIO_RUNNER_HOLLOW=true`` makes one agent hollow (main.py); ``regio_runner.hollow_fleet``
runs hundreds of hollow agents in one process. Their heartbeats carry the label hollow=true."""
import http.server
import logging
import threading
from collections.abc import Collection, Iterator
from dataclasses import replace
from datetime import datetime
from uuid import uuid4

from docker.errors import NotFound

from regio_common.messages import utcnow
from regio_common.runners import ContainerState, DesiredInstance, DesiredJob

from .docker_engine import (
    LABEL_PORT,
    Container,
    container_name,
    instance_labels,
    job_container_name,
    job_labels,
)

log = logging.getLogger(__name__)


class HollowServer:
    """The one HTTP server every hollow container of this process "publishes": 200 to any GET."""

    def __init__(self, address: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"hollow\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="hollow http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HollowOutput:
    """A hollow container's output: nothing, until the container stops or is removed (or the
    stream is closed), like Docker's followed log of a silent container."""

    def __init__(self, ended: threading.Event):
        self._ended = ended
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        while not (self._ended.is_set() or self._closed.is_set()):
            self._ended.wait(1.0)
        return iter(())

    def close(self) -> None:
        self._closed.set()


class HollowEngine:
    """The engine of a hollow runner: DockerEngine's methods, its containers in memory."""

    def __init__(self, runner: str, address: str, network: str = "", scope: str = "",
                 server: HollowServer | None = None):
        self.runner = runner
        self.address = address
        self.network = network
        self.scope = scope
        self._own_server = server is None
        self.server = server or HollowServer(address)
        self._containers: dict[str, Container] = {}
        self._runs_ended: dict[str, threading.Event] = {}  # container id -> set when its run ends
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_server:
            self.server.close()

    def ping(self) -> None:
        pass

    def ensure_network(self) -> None:
        pass

    def list(self, starting: Collection[str] = ()) -> list[Container]:
        with self._lock:
            return list(self._containers.values())

    def inspect(self, container_id: str) -> Container | None:
        with self._lock:
            return self._containers.get(container_id)

    def run(self, instance: DesiredInstance, env: dict[str, str]) -> str:
        return self._create(container_name(instance.instance_id), instance.image,
                            instance_labels(self.runner, self.scope, instance), running=True)

    def run_job(self, job: DesiredJob, env: dict[str, str]) -> str:
        return self._create(job_container_name(job.job_id), job.image,
                            job_labels(self.runner, self.scope, job), running=False)

    def _create(self, name: str, image: str, labels: dict[str, str], running: bool) -> str:
        now = utcnow()
        container = Container(
            container_id=uuid4().hex + uuid4().hex, name=name, image=image, labels=labels,
            state=ContainerState.RUNNING if running else ContainerState.EXITED,
            exit_code=None if running else 0, started_at=now,
            host_port=self.server.port if running else None, finished_at=None if running else now)
        with self._lock:
            if any(c.name == name for c in self._containers.values()):
                raise RuntimeError(f"the name {name} is in use by another hollow container")
            self._containers[container.container_id] = container
            self._runs_ended[container.container_id] = threading.Event()
            if not running:
                self._runs_ended[container.container_id].set()
        return container.container_id

    def start(self, container_id: str) -> None:
        with self._lock:
            container = self._get(container_id)
            if container.state == ContainerState.RUNNING:
                return
            self._containers[container_id] = replace(
                container, state=ContainerState.RUNNING, exit_code=None, started_at=utcnow(),
                host_port=self.server.port if LABEL_PORT in container.labels else None, oom_killed=False)
            self._runs_ended[container_id] = threading.Event()

    def kill(self, container_id: str) -> None:
        with self._lock:
            container = self._containers.get(container_id)
            if container is not None and container.state == ContainerState.RUNNING:
                self._end(container, exit_code=137)

    def remove(self, container_id: str) -> None:
        with self._lock:
            container = self._containers.pop(container_id, None)
            ended = self._runs_ended.pop(container_id, None)
        if container is not None and ended is not None:
            ended.set()

    def stop_and_remove(self, container_id: str, grace_seconds: int) -> None:
        """A hollow container stops at SIGTERM: no grace is waited out."""
        self.remove(container_id)

    def output(self, container_id: str, since: datetime | None, tail: int | str) -> HollowOutput:
        with self._lock:
            self._get(container_id)
            return HollowOutput(self._runs_ended[container_id])

    def _end(self, container: Container, exit_code: int) -> None:
        self._containers[container.container_id] = replace(
            container, state=ContainerState.EXITED, exit_code=exit_code, finished_at=utcnow(), host_port=None)
        self._runs_ended[container.container_id].set()

    def _get(self, container_id: str) -> Container:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFound(f"no hollow container {container_id}")
        return container


class HollowShipper:
    """The log shipper of a hollow runner ships nothing: its containers print nothing, and the
    real shipper would hold a thread per running container, following output that never comes
    (thousands of threads for a fleet)."""

    def observe(self, observed: list[Container]) -> None:
        pass

    def stopping(self, container_id: str) -> None:
        pass

    def restarting(self, container: Container, delay: float, restart: int) -> None:
        pass

    def recall(self, shipped: dict) -> None:
        pass

    def shipped(self) -> dict:
        return {}

    async def stop(self) -> None:
        pass
