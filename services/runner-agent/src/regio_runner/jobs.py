"""One-off jobs (release commands) on this runner: each desired job runs once, to its end, in
a container of its release, and is never restarted.

A job is recorded in the jobs table before its container is created, so neither a failed
start, a lost container nor an agent restart runs it a second time; a restarted agent adopts
the container and follows it on. Its output goes to the deployment log in batches through
the outbox, each line prefixed with the job's label; the same transaction moves the job's
mark (its last line shipped), so every line reaches the log once. A job past its timeout is
killed. It is reported exited only once it ended and all its output is in the outbox, and
its container is removed once the controller no longer wants the job."""
import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from cryptography.fernet import InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import DeploymentLogAppended, log_batch_length, utcnow
from regio_common.outbox import Outbox
from regio_common.runners import ContainerState, DesiredJob, JobState, ObservedJob
from regio_common.sealing import open_sealed

from .db import repository
from .db.repository import JobRecord
from .docker_engine import Container, DockerEngine
from .output import pump, split
from .settings import Settings

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.3  # a batch of output lines waits at most this long for more
MAX_BATCH = 500  # lines per message (and messages.LOG_BATCH_BYTES at most)
MAX_LINE = 8_000  # characters; a longer line is cut
KEEP_RECORDS = timedelta(days=7)  # long after any controller could still ask for the job


class JobRunner:
    def __init__(self, settings: Settings, engine: DockerEngine, sessions: async_sessionmaker[AsyncSession],
                 outbox: Outbox, poke: Callable[[], None]):
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.outbox = outbox
        self.poke = poke  # heartbeat now: a job ended
        self._records: dict[UUID, JobRecord] = {}  # of the jobs desired or with a container here
        self._tasks: dict[UUID, asyncio.Task] = {}  # job -> what runs for it: following it, or removing it
        self._removing: set[UUID] = set()

    async def prepare(self) -> None:
        async with self.sessions() as session, session.begin():
            await repository.prune_jobs(session, utcnow() - KEEP_RECORDS)

    def stop(self) -> None:
        """The agent stops: its jobs' containers run on, for the next agent to adopt."""
        for task in self._tasks.values():
            task.cancel()

    def sync(self, desired: list[DesiredJob] | None, containers: list[Container]) -> list[ObservedJob]:
        """One agent pass: start or adopt every desired job, remove the containers of the others,
        and say how each job stands. ``desired`` None: the controller never wrote this runner's
        desired state, so nothing is known to be unwanted."""
        here = {c.job_id: c for c in containers if c.job_id is not None}
        wanted = {j.job_id: j for j in desired or []}
        for job_id, job in wanted.items():
            record = self._records.get(job_id)
            if job_id not in self._tasks and (record is None or record.finished_at is None):
                self._spawn(job_id, self._supervise(job, here.get(job_id)))
        if desired is not None:
            for job_id, container in here.items():
                if job_id not in wanted and job_id not in self._removing:
                    self._removing.add(job_id)
                    self._spawn(job_id, self._remove(job_id, container.container_id, self._tasks.get(job_id)))
            for job_id in [j for j in self._records if j not in wanted and j not in here and j not in self._tasks]:
                del self._records[job_id]  # its row stays: a late desire for it is still refused
        return [self._observed(self._records[j]) for j in dict.fromkeys([*wanted, *here]) if j in self._records]

    @staticmethod
    def _observed(record: JobRecord) -> ObservedJob:
        if record.finished_at is None:
            return ObservedJob(job_id=record.job_id, state=JobState.RUNNING)
        return ObservedJob(job_id=record.job_id, state=JobState.EXITED, exit_code=record.exit_code,
                           timed_out=record.timed_out, error=record.error, finished_at=record.finished_at)

    def _spawn(self, job_id: UUID, work: Coroutine) -> None:
        task = asyncio.create_task(work, name=f"job {job_id}")
        self._tasks[job_id] = task

        def done(t: asyncio.Task) -> None:
            if self._tasks.get(job_id) is t:
                del self._tasks[job_id]
            if not t.cancelled() and t.exception() is not None:
                # The next pass takes the job up again from its record.
                log.warning("job %s: %s", job_id, t.exception())

        task.add_done_callback(done)

    # --- one job's life ---------------------------------------------------------------

    async def _supervise(self, job: DesiredJob, container: Container | None) -> None:
        async with self.sessions() as session:
            record = await repository.get_job(session, job.job_id)
        if record is None:
            container = await self._start(job)
        else:
            self._records[job.job_id] = record
            if record.finished_at is not None:
                return
            container = await self._adopt(record, container)
        if container is None:
            return  # it ended before it ran
        deadline = asyncio.create_task(self._enforce_timeout(self._records[job.job_id], container))
        try:
            await self._follow(job, container.container_id)
        finally:
            deadline.cancel()

    async def _start(self, job: DesiredJob) -> Container | None:
        record = JobRecord(job.job_id, job.deployment_id, job.label, job.timeout_seconds)
        async with self.sessions() as session, session.begin():
            if not await repository.insert_job(session, record):
                return None  # recorded meanwhile: the next pass adopts it
        self._records[job.job_id] = record
        try:
            env = open_sealed(self.settings.region_key, job.sealed_env)
        except (InvalidToken, ValueError):
            # Never log the sealed text or the key: only that this release cannot be opened here.
            await self._finish(job.job_id, error=f"the release's environment cannot be opened on runner {self.settings.name}")
            return None
        try:
            container_id = await asyncio.to_thread(self.engine.run_job, job, env)
        except Exception as e:
            # Whether anything ran is unknown: the job is not tried again.
            await self._finish(job.job_id, error=f"it could not be started on runner {self.settings.name}: {e}")
            return None
        await self._update(job.job_id, container_id=container_id)
        log.info("started job %s (%s) of deployment %s (container %s)", job.job_id, job.label, job.deployment_id,
                 container_id[:12])
        return await asyncio.to_thread(self.engine.inspect, container_id)

    async def _adopt(self, record: JobRecord, container: Container | None) -> Container | None:
        """A job started before (by an earlier agent, or a pass that failed): its container, or None
        when it has none any more (then it is finished with the reason)."""
        if record.container_id is None and container is not None:
            # The last agent stopped between creating the container and recording it.
            await self._update(record.job_id, container_id=container.container_id)
        elif record.container_id is not None:
            container = await asyncio.to_thread(self.engine.inspect, record.container_id)
        if container is None:
            reason = ("the runner agent stopped while starting it" if record.container_id is None
                      else "its container was removed before it ended")
            await self._finish(record.job_id, error=reason)
            return None
        if container.started_at is None:  # created and never started: starting it is its first run
            await asyncio.to_thread(self.engine.start, container.container_id)
            container = await asyncio.to_thread(self.engine.inspect, container.container_id)
        return container

    async def _enforce_timeout(self, record: JobRecord, container: Container) -> None:
        started = container.started_at or utcnow()
        delay = (started + timedelta(seconds=record.timeout_seconds) - utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        current = await asyncio.to_thread(self.engine.inspect, container.container_id)
        if current is None or current.state == ContainerState.EXITED:
            return
        try:
            await self._update(record.job_id, timed_out=True)
        except Exception:
            log.exception("job %s: could not record its timeout; its run time still shows it", record.job_id)
        await asyncio.to_thread(self.engine.kill, container.container_id)
        log.info("killed job %s (%s): it ran longer than %gs", record.job_id, record.label, record.timeout_seconds)

    async def _follow(self, job: DesiredJob, container_id: str) -> None:
        """Ships the job's output until it exited, then records how it ended."""
        while True:
            await self._ship_output(job.job_id, container_id)
            current = await asyncio.to_thread(self.engine.inspect, container_id)
            if current is None:
                await self._finish(job.job_id, error="its container was removed before it ended")
                return
            if current.state == ContainerState.EXITED:
                record = self._records[job.job_id]
                await self._finish(
                    job.job_id, exit_code=current.exit_code, finished_at=current.finished_at or utcnow(),
                    timed_out=record.timed_out or _ran_past(current, record.timeout_seconds),
                    error="it ran out of memory" if current.oom_killed else None)
                log.info("job %s (%s) exited with code %s", job.job_id, job.label, current.exit_code)
                return
            # Only the engine's stream broke: follow on from the last line shipped.
            await asyncio.sleep(1)

    async def _ship_output(self, job_id: UUID, container_id: str) -> None:
        """Follows the container's output to its end (or a broken stream), shipping it in batches."""
        mark = self._records[job_id].shipped_until
        output = await asyncio.to_thread(self.engine.output, container_id, mark, "all")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        # Not the default executor: a follow holds its thread for as long as the job runs.
        threading.Thread(target=pump, args=(output, loop, queue), daemon=True,
                         name=f"job output {container_id[:12]}").start()
        pending: list[tuple[datetime, str]] = []
        flush_at: float | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout(None if flush_at is None else max(0.0, flush_at - loop.time())):
                        chunk = await queue.get()
                except TimeoutError:
                    chunk = b""
                if chunk is None:
                    break
                for timestamp, text in split(chunk):
                    if mark is None or timestamp > mark:  # lines of the mark's second come again
                        pending.append((timestamp, text))
                if pending and flush_at is None:
                    flush_at = loop.time() + FLUSH_SECONDS
                if pending and (len(pending) >= MAX_BATCH or loop.time() >= flush_at):
                    await self._ship(job_id, pending)
                    pending, flush_at = [], None
            await self._ship(job_id, pending)
        finally:
            output.close()

    async def _ship(self, job_id: UUID, lines: list[tuple[datetime, str]]) -> None:
        record = self._records[job_id]
        texts = [f"[{record.label}] {_cut(text)}" for _, text in lines]
        start = 0
        while start < len(lines):
            # Bounded in bytes as well as lines: long lines must not make a message the bus refuses.
            end = start + log_batch_length(texts[start:start + MAX_BATCH], MAX_BATCH)
            async with self.sessions() as session, session.begin():
                await self.outbox.add(session, DeploymentLogAppended(deployment_id=record.deployment_id,
                                                                     lines=texts[start:end]))
                await repository.update_job(session, job_id, shipped_until=lines[end - 1][0])
            self._merge(job_id, shipped_until=lines[end - 1][0])
            start = end

    async def _finish(self, job_id: UUID, **values) -> None:
        values.setdefault("finished_at", utcnow())
        await self._update(job_id, **values)
        self.poke()

    async def _update(self, job_id: UUID, **values) -> None:
        async with self.sessions() as session, session.begin():
            await repository.update_job(session, job_id, **values)
        self._merge(job_id, **values)

    def _merge(self, job_id: UUID, **values) -> None:
        self._records[job_id] = replace(self._records[job_id], **values)

    async def _remove(self, job_id: UUID, container_id: str, running: asyncio.Task | None) -> None:
        """The job is no longer desired: stop following it and remove its container, running or not."""
        try:
            if running is not None:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await asyncio.to_thread(self.engine.remove, container_id)
            log.info("removed the container %s of job %s", container_id[:12], job_id)
        finally:
            self._removing.discard(job_id)


def _ran_past(container: Container, timeout_seconds: float) -> bool:
    """Killed for its timeout, judged from its run time: when recording the timeout failed."""
    if container.exit_code == 0 or container.started_at is None or container.finished_at is None:
        return False
    return (container.finished_at - container.started_at).total_seconds() >= timeout_seconds


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + " [cut]"
