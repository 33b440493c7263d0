"""The build worker: takes queued builds one at a time and runs them, and stops the one it
runs when its deployment is cancelled.

Builds never run inside the message handler: a handler only queues, so a long build
cannot outlive its message's ack deadline and a killed builder finds its queue in
the database on restart."""
import asyncio
import dataclasses
import logging
import time
from uuid import UUID

from sqlalchemy import Row

from regio_common.runtime import Runtime

from ..build.log import BuildLog
from . import builds, cancellation
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
        self._cancelled = asyncio.Event()

    def wake(self) -> None:
        """A build was queued: look now instead of at the next poll."""
        self._wakeup.set()

    def check_cancelled(self) -> None:
        """A running build's deployment was cancelled: the running build looks whether it is its
        own now instead of at the next poll."""
        self._cancelled.set()

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

    async def _sleep(self, until: asyncio.Event | None = None) -> None:
        try:
            await asyncio.wait_for((until or self._wakeup).wait(), self.poll_seconds)
        except TimeoutError:
            pass

    async def run_build(self, build: Row) -> None:
        log.info("build %s for deployment %s started", build.id, build.deployment_id)
        # Monotonic: a wall clock set back or forth mid-build must not bill minutes nobody built.
        started = time.monotonic()

        async def publish(lines: list[str]) -> None:
            async with self.runtime.sessions() as session, session.begin():
                await builds.append_log(session, self.runtime.outbox, build.deployment_id, build.id, lines)

        async with BuildLog(publish, self.log_flush_seconds) as build_log:
            try:
                outcome = await self._run_unless_cancelled(build, build_log)
            except Exception:
                # A bug or a lost database must not leave the deployment waiting forever.
                log.exception("build %s crashed", build.id)
                build_log.write("Build failed: internal builder error")
                outcome = Outcome(success=False, error="internal builder error")
        # Failed and cancelled builds worked too; a reused image's is the moment it took to find.
        outcome = dataclasses.replace(outcome, build_seconds=time.monotonic() - started)
        # The log is flushed before the result, so the deployment log is complete when it ends.
        async with self.runtime.sessions() as session, session.begin():
            await builds.finish(session, self.runtime.outbox, build, outcome)
        log.info("build %s for deployment %s %s", build.id, build.deployment_id,
                 "succeeded" if outcome.success else f"failed: {outcome.error}")

    async def _run_unless_cancelled(self, build: Row, build_log: BuildLog) -> Outcome:
        """The pipeline's outcome, or, when the deployment is cancelled first, a failed one: the
        pipeline is cancelled, which kills its git or hangs up its docker build (the Engine then
        stops the build's container)."""
        pipeline = asyncio.create_task(self.pipeline.run(build, build_log), name=f"build {build.id}")
        watch = asyncio.create_task(self._cancellation(build.deployment_id), name=f"cancel watch {build.id}")
        try:
            done, _ = await asyncio.wait((pipeline, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pipeline, watch):
                task.cancel()
            await asyncio.gather(pipeline, watch, return_exceptions=True)
        if pipeline in done:
            return pipeline.result()  # it ended before any cancel: its outcome stands
        reason = watch.result()
        log.info("build %s stopped: deployment %s cancelled (%s)", build.id, build.deployment_id, reason)
        build_log.write(f"Build cancelled: {reason}")
        return Outcome(success=False, error=cancellation.error(reason))

    async def _cancellation(self, deployment_id: UUID) -> str:
        """Why the deployment was cancelled, once it is. Looks on every poll too: another
        builder process may have handled the cancel."""
        while True:
            self._cancelled.clear()
            try:
                async with self.runtime.sessions() as session:
                    reason = await cancellation.reason(session, deployment_id)
            except Exception:  # the build goes on; the next look may reach the database
                log.exception("looking whether deployment %s was cancelled failed", deployment_id)
                reason = None
            if reason is not None:
                return reason
            await self._sleep(self._cancelled)
