"""Each runner's desired state: the full lists of instances and jobs it should run, written to
its key in the region's runner-desired bucket. Built from the database every time, never
patched, so any write heals every earlier missed one.

Writes are coalesced: whoever changes what runners should run asks for those runners to be
written and waits for the next write of them. One writer takes every runner asked for so
far and writes them together (one transaction for the revisions and the rows, then the
bucket writes side by side), so a thousand rollouts placing at once cost a few batches,
not a thousand round trips each."""
import asyncio
import logging
from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.bus import runner_desired_bucket
from regio_common.runners import DesiredInstance, DesiredJob, RunnerDesired

from ..db import repository

log = logging.getLogger(__name__)

# Runners written per transaction: bounds the size of one query and of one failure.
BATCH = 500
PARALLEL_PUTS = 64


class DesiredState:
    def __init__(self, js: JetStreamContext, sessions: async_sessionmaker[AsyncSession], region: str):
        self.js = js
        self.sessions = sessions
        self.region = region
        self._bucket: KeyValue | None = None
        self._asked: set[str] = set()
        self._waiters: list[asyncio.Future] = []
        self._writer: asyncio.Task | None = None
        # Revisions must reach the bucket in the order they were taken: one batch at a time.
        self._lock = asyncio.Lock()
        # Runner -> memory of the instances and jobs it was last told to run (runners.capacity).
        self.held_mb: dict[str, int] = {}

    async def publish_many(self, runners: Iterable[str]) -> None:
        """Returns once every runner named was written (or failed to be: best effort, the
        reconcile loop writes again). A write that began before this call may not include
        the change that prompted it, so this waits for one that begins after."""
        names = set(runners)
        if not names:
            return
        future = asyncio.get_running_loop().create_future()
        self._asked |= names
        self._waiters.append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_asked(), name="desired-state writer")
        await asyncio.shield(future)

    async def _write_asked(self) -> None:
        while self._asked:
            # Every waiter so far asked for runners of this batch only.
            names, self._asked = self._asked, set()
            waiters, self._waiters = self._waiters, []
            try:
                async with self._lock:
                    ordered = sorted(names)
                    for start in range(0, len(ordered), BATCH):
                        await self._write(ordered[start:start + BATCH])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("desired state of %d runner(s) not written; the reconcile loop retries", len(names))
            finally:
                for future in waiters:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, runners: list[str]) -> list[RunnerDesired]:
        async with self.sessions() as session, session.begin():
            revisions = await repository.next_desired_revisions(session, runners)
            instances = await repository.desired_instances(session, revisions)
            jobs = await repository.desired_jobs(session, revisions)
        desired = {name: RunnerDesired(runner=name, revision=revision) for name, revision in revisions.items()}
        for instance, release in instances:
            desired[instance.runner].instances.append(DesiredInstance(
                instance_id=instance.id, environment_id=instance.environment_id, release_id=release.id,
                image=release.image, port=release.port, sealed_env=release.sealed_env,
                memory_mb=release.memory_mb, cpus=release.cpus))
        for job, release in jobs:
            desired[job.runner].jobs.append(DesiredJob(
                job_id=job.id, deployment_id=job.deployment_id, environment_id=job.environment_id,
                release_id=release.id, label=job.label, image=release.image, command=job.command,
                sealed_env=release.sealed_env, memory_mb=release.memory_mb, cpus=release.cpus,
                timeout_seconds=job.timeout_seconds))
        bucket = await self._desired_bucket()
        pending = list(desired.values())
        for start in range(0, len(pending), PARALLEL_PUTS):
            await asyncio.gather(*(bucket.put(d.runner, d.model_dump_json().encode())
                                   for d in pending[start:start + PARALLEL_PUTS]))
        for d in pending:
            self.held_mb[d.runner] = sum(i.memory_mb for i in d.instances) + sum(j.memory_mb for j in d.jobs)
        return pending

    async def _desired_bucket(self) -> KeyValue:
        if self._bucket is None:
            self._bucket = await self.js.key_value(runner_desired_bucket(self.region))
        return self._bucket
