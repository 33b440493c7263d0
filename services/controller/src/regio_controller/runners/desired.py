"""Each runner's desired state: the full lists of instances and jobs it should run, written to
its key in the region's runner-desired bucket. Built from the database every time,
never patched, so any write heals every earlier missed one."""
import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.bus import runner_desired_bucket
from regio_common.runners import DesiredInstance, DesiredJob, RunnerDesired

from ..db import repository

log = logging.getLogger(__name__)


class DesiredState:
    def __init__(self, js: JetStreamContext, sessions: async_sessionmaker[AsyncSession], region: str):
        self.js = js
        self.sessions = sessions
        self.region = region
        self._bucket: KeyValue | None = None
        # Revisions must reach the bucket in the order they were taken.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def publish_desired(self, runner: str) -> RunnerDesired | None:
        """Writes ``runner``'s full desired state under the next revision; None for an unknown runner."""
        async with self._locks[runner]:
            async with self.sessions() as session, session.begin():
                revision = await repository.next_desired_revision(session, runner)
                if revision is None:
                    return None
                rows = await repository.desired_instances(session, runner)
                jobs = await repository.desired_jobs(session, runner)
            desired = RunnerDesired(
                runner=runner,
                revision=revision,
                instances=[
                    DesiredInstance(instance_id=instance.id, environment_id=instance.environment_id,
                                    release_id=release.id, image=release.image, port=release.port,
                                    sealed_env=release.sealed_env, memory_mb=release.memory_mb, cpus=release.cpus)
                    for instance, release in rows
                ],
                jobs=[
                    DesiredJob(job_id=job.id, deployment_id=job.deployment_id, environment_id=job.environment_id,
                               release_id=release.id, label=job.label, image=release.image, command=job.command,
                               sealed_env=release.sealed_env, memory_mb=release.memory_mb, cpus=release.cpus,
                               timeout_seconds=job.timeout_seconds)
                    for job, release in jobs
                ],
            )
            bucket = await self._desired_bucket()
            await bucket.put(runner, desired.model_dump_json().encode())
            return desired

    async def publish_many(self, runners: Iterable[str]) -> None:
        """Best effort: a write that fails now is repeated by the reconcile loop."""
        for runner in sorted(set(runners)):
            try:
                await self.publish_desired(runner)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("desired state of runner %s not written; the reconcile loop retries", runner)

    async def _desired_bucket(self) -> KeyValue:
        if self._bucket is None:
            self._bucket = await self.js.key_value(runner_desired_bucket(self.region))
        return self._bucket
