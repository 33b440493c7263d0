"""docker build through the Engine API, its output streamed line by line as it comes.

The docker SDK blocks, so its output is read in a thread and handed to the event loop
through a queue; the event loop never waits on the Engine."""
import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound
from requests import RequestException

from ..domain.errors import BuildTimedOut, DockerBuildFailed

API_TIMEOUT = 60  # seconds, for short Engine calls (inspect, ping)
CPU_PERIOD = 100_000  # µs: the scheduler period a build's CPU quota is a share of
RUNNING_IN = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})\s*$")
KILLED = "returned a non-zero code: 137"  # SIGKILL: the kernel's OOM killer, within the memory limit


@dataclass(frozen=True)
class BuildLimits:
    """What each step of an untrusted build may use: its RUN containers get these limits."""

    memory_mb: int
    cpus: float
    # The cgroup the steps' containers are placed under, whose process limit is theirs
    # (regio_common.cgroups): the build API has no process limit of its own.
    cgroup_parent: str | None = None

    def container_limits(self) -> dict[str, int]:
        memory = self.memory_mb * 1024 * 1024
        return {"memory": memory, "memswap": memory}  # memswap = memory: no swap on top

    def engine_params(self) -> dict[str, int | str]:
        """The limits the Engine's build API takes that the SDK's build() does not."""
        params: dict[str, int | str] = {"cpuperiod": CPU_PERIOD, "cpuquota": int(self.cpus * CPU_PERIOD)}
        if self.cgroup_parent:
            params["cgroupparent"] = self.cgroup_parent
        return params


class _BuildClient(docker.APIClient):
    """The SDK's low-level client, passing the rest of a build's limits on: the Engine's build
    API takes cpuperiod, cpuquota and cgroupparent, the SDK's build() only the four container
    limits it knows."""

    def __init__(self, *args, build_params: dict[str, int | str], **kwargs):
        super().__init__(*args, **kwargs)
        self.build_params = build_params

    def _post(self, url, **kwargs):
        if url.endswith("/build"):
            kwargs["params"] = {**(kwargs.get("params") or {}), **self.build_params}
        return super()._post(url, **kwargs)


@dataclass(frozen=True)
class Image:
    id: str  # sha256:…
    exposed_port: int | None


def exposed_port(config: dict) -> int | None:
    """The image's EXPOSEd TCP port. The Engine does not keep the Dockerfile's order,
    so with several the lowest is taken: the same answer every time."""
    ports = []
    for key in (config.get("ExposedPorts") or {}):
        number, _, protocol = key.partition("/")
        if (protocol or "tcp") == "tcp" and number.isdigit():
            ports.append(int(number))
    return min(ports) if ports else None


class Lines:
    """Cuts the Engine's stream chunks, which may split or join lines, into lines."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.partial = ""

    def feed(self, text: str) -> None:
        *complete, self.partial = (self.partial + text).split("\n")
        for line in complete:
            self.on_line(line.rstrip("\r"))

    def flush(self) -> None:
        if self.partial:
            self.on_line(self.partial.rstrip("\r"))
            self.partial = ""


_END = object()


@dataclass
class _Failed:
    error: Exception


class DockerEngine:
    def __init__(self, docker_host: str | None = None, build_network: str | None = None):
        self.docker_host = docker_host
        self.build_network = build_network  # where RUN steps run; None: the Engine's default bridge

    def client(self, timeout: float = API_TIMEOUT) -> docker.APIClient:
        """A new low-level client (it connects: call it in a thread)."""
        return docker.APIClient(version="auto", timeout=timeout, **self._connection())

    def _connection(self) -> dict:
        return {"base_url": self.docker_host} if self.docker_host else docker.utils.kwargs_from_env()

    def _inspect(self, ref: str) -> Image | None:
        with self.client() as api:
            try:
                data = api.inspect_image(ref)
            except NotFound:
                return None
        return Image(id=data["Id"], exposed_port=exposed_port(data.get("Config") or {}))

    async def find_image(self, ref: str) -> Image | None:
        """The image if the Engine still has it."""
        try:
            return await asyncio.to_thread(self._inspect, ref)
        except (DockerException, RequestException) as e:
            raise DockerBuildFailed(f"Docker Engine error: {e}") from e

    async def ping(self) -> None:
        def ping() -> None:
            with self.client(timeout=5) as api:
                api.ping()

        await asyncio.to_thread(ping)

    async def build(self, context: Path, tag: str, on_line: Callable[[str], None],
                    timeout: float, limits: BuildLimits) -> Image:
        """Build ``context`` (its Dockerfile at the root) as ``tag``, each step within ``limits``
        and the whole within ``timeout`` seconds; every output line goes to ``on_line`` as the
        Engine produces it. No build args: nothing of an environment's variables reaches the build."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        responses: list = []
        steps: list[str] = []  # the ids of the containers that ran its RUN steps
        started = time.time()

        def on_step_line(line: str) -> None:
            if step := RUNNING_IN.match(line):
                steps.append(step.group(1))
            on_line(line)

        def hand_over(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the service is shutting down
                pass

        def produce() -> None:
            try:
                with _BuildClient(version="auto", timeout=timeout, build_params=limits.engine_params(),
                                  **self._connection()) as api:
                    api.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
                    # The layer cache is kept on purpose (no nocache): unchanged steps are not rebuilt.
                    for chunk in api.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False,
                                           decode=True, container_limits=limits.container_limits(),
                                           network_mode=self.build_network):
                        if stop.is_set():
                            break
                        hand_over(chunk)
            except Exception as e:
                if not stop.is_set():
                    hand_over(_Failed(e))
            finally:
                hand_over(_END)

        # A daemon thread: a build stuck in the Engine must not keep the service from exiting.
        threading.Thread(target=produce, name=f"docker build {tag}", daemon=True).start()
        lines = Lines(on_step_line)
        built: str | None = None
        try:
            async with asyncio.timeout(timeout):
                while (chunk := await queue.get()) is not _END:
                    if isinstance(chunk, _Failed):
                        raise DockerBuildFailed(f"Docker Engine error: {chunk.error}")
                    if "error" in chunk or "errorDetail" in chunk:
                        lines.flush()
                        detail = chunk.get("errorDetail") or {}
                        reason = (detail.get("message") or chunk.get("error") or "").strip() or "docker build failed"
                        if reason.endswith(KILLED) and await self._ran_out_of_memory(steps, started):
                            reason += (f": the step ran out of memory (a build step may use at most "
                                       f"{limits.memory_mb} MB)")
                        raise DockerBuildFailed(reason)
                    if "stream" in chunk:
                        lines.feed(chunk["stream"])
                    elif "status" in chunk and not chunk.get("progressDetail"):
                        # Pulls report progress bars many times a second; only their steps are logged.
                        lines.feed(" ".join(filter(None, (chunk.get("id"), chunk["status"]))) + "\n")
                    if "aux" in chunk and (chunk["aux"] or {}).get("ID"):
                        built = chunk["aux"]["ID"]
        except TimeoutError:
            raise BuildTimedOut(f"docker build exceeded the build time limit of {_duration(timeout)}") from None
        finally:
            lines.flush()
            stop.set()
            _hang_up(responses)
        image = await self.find_image(built or tag)
        if image is None:
            raise DockerBuildFailed("docker build ended without an image")
        return image


    async def _ran_out_of_memory(self, steps: list[str], since: float) -> bool:
        """Whether the Engine saw the last step's container killed for memory (it is removed by now)."""
        if not steps:
            return False

        def oom_events() -> list[dict]:
            with self.client() as api:
                return list(api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                       filters={"type": "container", "event": "oom"}))

        try:
            events = await asyncio.to_thread(oom_events)
        except (DockerException, RequestException):
            return False
        return any((event.get("id") or event.get("Actor", {}).get("ID", "")).startswith(steps[-1]) for event in events)


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def _hang_up(responses: list) -> None:
    """Close the build's connection: the Engine cancels a build whose client went away,
    and the thread blocked reading it wakes up."""
    for response in responses:
        try:
            response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # already closed, or a transport without a socket: nothing to cancel
            pass
