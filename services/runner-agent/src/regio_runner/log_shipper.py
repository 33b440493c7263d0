"""Shipping the runtime logs of this runner's application containers.

Each application container is followed while it runs: every line it writes to stdout or
stderr becomes one message on its environment's log subject, stamped with the time Docker
recorded for it. (Docker's SDK gives the two merged, in the order Docker recorded them, over
one connection; telling them apart would take a connection for each.) Docker keeps a container's output, so a follow that starts late (after an
agent restart, a broken engine stream, a NATS outage) resumes from the instance's last line
shipped: remembered, or after an agent restart read back from the runner's last heartbeat,
which carries how far each instance was shipped (an agent that crashed may ship again the
lines of its last heartbeat interval; one that stopped wrote a last heartbeat). The platform's
own lines go to the same subject as service "platform": an instance started, exited (with
its code, and whether it ran out of memory), is restarted after a delay, or was stopped, and
this agent started or stopped.

Lines are published with core NATS: the REGIO_LOGS stream captures them without a
per-line acknowledgement, which a chatty application could not afford."""
import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from docker.errors import NotFound
from nats.aio.client import Client

from regio_common import bus, runtime_logs
from regio_common.messages import utcnow
from regio_common.runners import ContainerState, ShippedLog
from regio_common.runtime_logs import PLATFORM, WEB, LogLine

from .docker_engine import Container, DockerEngine
from .output import pump, split

log = logging.getLogger(__name__)

# A follow that starts without knowing what was shipped replays at most what the stream keeps.
REPLAY_LINES = bus.LOGS.max_msgs_per_subject


@dataclass
class Marks:
    """How far an instance's lines have been shipped."""

    output: datetime | None = None  # its last line of output
    event: datetime | None = None  # its last platform line (started, exited, stopped)


def parse(chunk: bytes, instance_id: UUID) -> list[LogLine]:
    """Docker's "<RFC 3339 time> <text>" lines, as log lines."""
    return [LogLine(timestamp=timestamp, service=WEB, instance=instance_id, message=text)
            for timestamp, text in split(chunk)]


class LogShipper:
    def __init__(self, engine: DockerEngine, nc: Client, region: str, runner: str):
        self.engine = engine
        self.nc = nc
        self.region = region
        self.runner = runner
        self._follows: dict[str, tuple[Container, asyncio.Task]] = {}  # container id -> its follow
        self._finished: dict[str, datetime | None] = {}  # container id -> the run (started_at) shipped to its end
        self._marks: dict[UUID, Marks] = {}  # instance id -> what has been shipped of it
        self._recalled: dict[UUID, Marks] = {}  # what the last agent's last heartbeat said was shipped
        self._stopping: set[str] = set()  # containers the agent is stopping: their exit is no failure
        self._greeted: set[UUID] = set()  # environments told that this agent started
        self._announcing: set[asyncio.Task] = set()  # restarts being said, each after its exit
        self._stopped = False

    def observe(self, observed: list[Container]) -> None:
        """After each reconcile pass: follow every application container whose output is
        not shipped to its end yet; forget the ones that are gone."""
        if self._stopped:
            return
        for container in observed:
            if not (container.instance_id and container.environment_id and container.started_at):
                continue  # not an application instance, or never started
            key = container.container_id
            if key in self._follows:
                continue
            if container.state == ContainerState.RUNNING or (
                    container.state == ContainerState.EXITED and self._finished.get(key) != container.started_at):
                self._start_follow(container)
        here = {c.container_id for c in observed}
        instances = {c.instance_id for c in observed}
        for key in [k for k in self._finished if k not in here]:
            del self._finished[key]
        self._stopping = {k for k in self._stopping if k in here or k in self._follows}
        for table in (self._marks, self._recalled):
            for instance_id in [i for i in table if i not in instances]:
                del table[instance_id]

    def stopping(self, container_id: str) -> None:
        """The agent is about to stop this container: its exit is reported as a stop."""
        self._stopping.add(container_id)

    def restarting(self, container: Container, delay: float, restart: int) -> None:
        """The agent restarts this exited instance in ``delay`` seconds: said right after its
        exit, once the follow of the run that ended has said how it ended."""
        if self._stopped or not (container.instance_id and container.environment_id):
            return
        at = utcnow()  # when it was decided: after the exit, before the next run starts
        message = f"instance {str(container.instance_id)[:8]} restarting in {delay:g}s (restart {restart})"
        follow = self._follows.get(container.container_id)
        task = asyncio.create_task(self._announce(container, follow[1] if follow else None, at, message),
                                   name=f"restart line {container.container_id[:12]}")
        self._announcing.add(task)

        def done(t: asyncio.Task) -> None:
            self._announcing.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("could not say that instance %s restarts: %s", container.instance_id, t.exception())

        task.add_done_callback(done)

    async def stop(self) -> None:
        """Before the agent stops: stop following, and say so in each environment followed."""
        self._stopped = True
        follows = list(self._follows.values())
        for task in [*(task for _, task in follows), *self._announcing]:
            task.cancel()
        await asyncio.gather(*(task for _, task in follows), *self._announcing, return_exceptions=True)
        try:
            for environment_id in {c.environment_id for c, _ in follows}:
                await self._publish(environment_id, LogLine(
                    timestamp=utcnow(), service=PLATFORM,
                    message=f"runner agent on {self.runner} stopped; its instances' output follows when it is back"))
            if follows:
                await self.nc.flush(timeout=2)
        except Exception as e:  # NATS away: the agent stops all the same
            log.warning("could not say in the logs that the agent stops: %s", e)

    # --- following one container -------------------------------------------------

    def _start_follow(self, container: Container) -> None:
        key = container.container_id
        task = asyncio.create_task(self._follow(container), name=f"logs {key[:12]}")
        self._follows[key] = (container, task)

        def done(t: asyncio.Task) -> None:
            if self._follows.get(key, (None, None))[1] is t:
                del self._follows[key]
            if not t.cancelled() and t.exception() is not None:
                # The next pass follows it again, from the last line shipped.
                log.warning("following the output of container %s failed: %s", key[:12], t.exception())

        task.add_done_callback(done)

    async def _follow(self, container: Container) -> None:
        marks, read_back = await self._marks_of(container)
        short = str(container.instance_id)[:8]
        if all(mark is None or container.started_at > mark for mark in (marks.output, marks.event)):
            await self._event(container, marks, container.started_at, f"instance {short} started on {self.runner}")
        elif read_back and container.environment_id not in self._greeted:
            self._greeted.add(container.environment_id)
            await self._publish(container.environment_id, LogLine(
                timestamp=utcnow(), service=PLATFORM,
                message=f"runner agent on {self.runner} started; following its instances again"))

        resume = marks.output  # lines up to this one were shipped already
        try:
            output = await asyncio.to_thread(self.engine.output, container.container_id, resume, REPLAY_LINES)
        except NotFound:
            return  # removed meanwhile
        queue: asyncio.Queue = asyncio.Queue()
        # Not the default executor: a follow holds its thread for as long as the container runs.
        threading.Thread(target=pump, args=(output, asyncio.get_running_loop(), queue), daemon=True,
                         name=f"logs {container.container_id[:12]}").start()
        try:
            while (chunk := await queue.get()) is not None:
                for line in parse(chunk, container.instance_id):
                    if resume is not None and line.timestamp <= resume:
                        continue  # shipped before this follow began
                    await self._publish(container.environment_id, line)
                    marks.output = line.timestamp
        finally:
            output.close()
        await self._ended(container, marks)

    async def _ended(self, container: Container, marks: Marks) -> None:
        """Both streams ended: the container stopped, or only the engine's stream broke."""
        now = await asyncio.to_thread(self.engine.inspect, container.container_id)
        if now is not None and now.state in (ContainerState.RUNNING, ContainerState.STARTING):
            return  # only the engine's stream broke: the next pass follows it again
        short = str(container.instance_id)[:8]
        at = (now.finished_at if now is not None else None) or utcnow()
        if container.container_id in self._stopping:  # the agent may have removed it already
            self._stopping.discard(container.container_id)
            await self._event(container, marks, at, f"instance {short} stopped")
        elif now is not None and now.state == ContainerState.EXITED:
            message = f"instance {short} exited with code {now.exit_code}"
            if now.oom_killed:
                message += " (out of memory)"
            await self._event(container, marks, at, message)
        if now is not None and now.state == ContainerState.EXITED:
            self._finished[container.container_id] = now.started_at

    async def _announce(self, container: Container, follow: asyncio.Task | None, at: datetime, message: str) -> None:
        if follow is not None:
            await asyncio.wait([follow])  # its exit line first; never cancels the follow
        marks, _ = await self._marks_of(container)
        await self._event(container, marks, at, message)

    async def _event(self, container: Container, marks: Marks, at: datetime, message: str) -> None:
        """A platform line about an instance, once: the stream may hold it from an earlier agent."""
        if marks.event is not None and at <= marks.event:
            return
        await self._publish(container.environment_id, LogLine(
            timestamp=at, service=PLATFORM, instance=container.instance_id, message=message))
        marks.event = at

    def recall(self, shipped: dict[UUID, ShippedLog]) -> None:
        """Before the first pass: how far the last agent of this runner shipped each instance."""
        self._recalled = {instance_id: Marks(output=s.output, event=s.event) for instance_id, s in shipped.items()}

    def shipped(self) -> dict[UUID, ShippedLog]:
        """For the heartbeat: how far each instance followed is shipped."""
        known = {**self._recalled, **self._marks}
        return {instance_id: ShippedLog(output=m.output, event=m.event) for instance_id, m in known.items()
                if m.output is not None or m.event is not None}

    async def _marks_of(self, container: Container) -> tuple[Marks, bool]:
        """What was shipped of the instance: remembered, or else as the last agent left it
        (then True)."""
        marks = self._marks.get(container.instance_id)
        if marks is not None:
            return marks, False
        marks = self._recalled.pop(container.instance_id, None) or Marks()
        self._marks[container.instance_id] = marks
        return marks, True

    async def _publish(self, environment_id: UUID, line: LogLine) -> None:
        await self.nc.publish(runtime_logs.subject(self.region, environment_id), line.model_dump_json().encode())
