"""docker build through the Engine API, its output streamed line by line as it comes.

The docker SDK blocks, so its output is read in a thread and handed to the event loop
through a queue; the event loop never waits on the Engine."""
import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound
from requests import RequestException

from ..domain.errors import BuildTimedOut, DockerBuildFailed

API_TIMEOUT = 60  # seconds, for short Engine calls (inspect, ping)


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
    def __init__(self, docker_host: str | None = None):
        self.docker_host = docker_host

    def client(self, timeout: float = API_TIMEOUT) -> docker.APIClient:
        """A new low-level client (it connects: call it in a thread)."""
        kwargs = {"base_url": self.docker_host} if self.docker_host else docker.utils.kwargs_from_env()
        return docker.APIClient(version="auto", timeout=timeout, **kwargs)

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
                    timeout: float) -> Image:
        """Build ``context`` (its Dockerfile at the root) as ``tag``; every output line goes to
        ``on_line`` as the Engine produces it. No build args: nothing of an environment's
        variables reaches the build."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        responses: list = []

        def hand_over(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the service is shutting down
                pass

        def produce() -> None:
            try:
                with self.client(timeout=timeout) as api:
                    api.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
                    # The layer cache is kept on purpose (no nocache): unchanged steps are not rebuilt.
                    for chunk in api.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False,
                                           decode=True):
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
        lines = Lines(on_line)
        built: str | None = None
        try:
            async with asyncio.timeout(timeout):
                while (chunk := await queue.get()) is not _END:
                    if isinstance(chunk, _Failed):
                        raise DockerBuildFailed(f"Docker Engine error: {chunk.error}")
                    if "error" in chunk or "errorDetail" in chunk:
                        lines.flush()
                        detail = chunk.get("errorDetail") or {}
                        raise DockerBuildFailed((detail.get("message") or chunk.get("error") or "").strip()
                                                or "docker build failed")
                    if "stream" in chunk:
                        lines.feed(chunk["stream"])
                    elif "status" in chunk and not chunk.get("progressDetail"):
                        # Pulls report progress bars many times a second; only their steps are logged.
                        lines.feed(" ".join(filter(None, (chunk.get("id"), chunk["status"]))) + "\n")
                    if "aux" in chunk and (chunk["aux"] or {}).get("ID"):
                        built = chunk["aux"]["ID"]
        except TimeoutError:
            raise BuildTimedOut(f"docker build did not finish within {timeout:g} seconds") from None
        finally:
            lines.flush()
            stop.set()
            _hang_up(responses)
        image = await self.find_image(built or tag)
        if image is None:
            raise DockerBuildFailed("docker build ended without an image")
        return image


def _hang_up(responses: list) -> None:
    """Close the build's connection: the Engine cancels a build whose client went away,
    and the thread blocked reading it wakes up."""
    for response in responses:
        try:
            response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # already closed, or a transport without a socket: nothing to cancel
            pass
