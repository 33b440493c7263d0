"""The build worker: takes queued builds one at a time and runs them.

Builds never run inside the message handler: a handler only queues, so a long build
cannot outlive its message's ack deadline and a killed builder finds its queue in
the database on restart."""
import asyncio
import logging

from sqlalchemy import Row

from regio_common.runtime import Runtime

from ..build.log import BuildLog
from . import builds
from .builds import Outcome
from .pipeline import BuildPipeline

log = logging.getLogger(__name__)


class BuildWorker:
    def __init__(self, runtime: Runtime, pipeline: BuildPipeline, poll_seconds: float = 1.0,
                 log_flush_seconds: float = 0.3):
        self.runtime = runtime
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.log_flush_seconds = log_flush_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """A build was queued: look now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        async with self.runtime.sessions() as session, session.begin():
            await builds.requeue_interrupted(session, self.runtime.outbox)
        while True:
            self._wakeup.clear()
            async with self.runtime.sessions() as session, session.begin():
                build = await builds.claim_next(session, self.runtime.outbox)
            if build is None:
                await self._sleep()
                continue
            await self.run_build(build)

    async def _sleep(self) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)
        except TimeoutError:
            pass

    async def run_build(self, build: Row) -> None:
        log.info("build %s for deployment %s started", build.id, build.deployment_id)

        async def publish(lines: list[str]) -> None:
            async with self.runtime.sessions() as session, session.begin():
                await builds.append_log(session, self.runtime.outbox, build.deployment_id, build.id, lines)

        async with BuildLog(publish, self.log_flush_seconds) as build_log:
            try:
                outcome = await self.pipeline.run(build, build_log)
            except Exception:
                # A bug or a lost database must not leave the deployment waiting forever.
                log.exception("build %s crashed", build.id)
                build_log.write("Build failed: internal builder error")
                outcome = Outcome(success=False, error="internal builder error")
        # The log is flushed before the result, so the deployment log is complete when it ends.
        async with self.runtime.sessions() as session, session.begin():
            await builds.finish(session, self.runtime.outbox, build, outcome)
        log.info("build %s for deployment %s %s", build.id, build.deployment_id,
                 "succeeded" if outcome.success else f"failed: {outcome.error}")
