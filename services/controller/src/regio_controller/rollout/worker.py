"""Runs due rollouts from the database: environments in parallel (up to a bound), each environment's
rollouts one at a time and in the order they were requested. Because it starts from
the database, a restarted controller picks up where the killed one stopped."""
import asyncio
import logging
from uuid import UUID

from ..db import repository
from .context import RolloutContext
from .run import fail_rollout, run_rollout

log = logging.getLogger(__name__)

RETRY_SECONDS = (1, 2, 5, 10)


async def cancel_all(tasks) -> None:
    """Cancels until every task has ended: on Python 3.11 asyncio.wait_for (inside nats-py
    and elsewhere) can swallow a cancellation that races with a result."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)


class RolloutWorker:
    def __init__(self, ctx: RolloutContext, poll_seconds: float, parallel: int, max_attempts: int = 5):
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self.parallel = parallel
        self.max_attempts = max_attempts
        self._running: dict[UUID, asyncio.Task] = {}  # by environment
        self._running_deployment: dict[UUID, UUID] = {}  # environment → the deployment its task rolls out
        self._attempts: dict[UUID, int] = {}  # by deployment: runs that crashed
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due rollouts now rather than at the next poll."""
        self._wake.set()

    def stop(self, environment_id: UUID, deployment_id: UUID | None = None) -> None:
        """Stops the environment's running rollout now (only if it is ``deployment_id``'s, when
        given): it was ended from outside (the environment was retired, or the deployment
        cancelled). A cancellation lost in a race is caught by the rollout's next step."""
        task = self._running.get(environment_id)
        if task is not None and deployment_id in (None, self._running_deployment.get(environment_id)):
            task.cancel()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.start_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Running rollouts go on; only the search for new ones failed.
                    log.exception("looking for due rollouts failed; retrying")
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await cancel_all(self._running.values())

    async def start_due(self) -> None:
        async with self.ctx.sessions() as session:
            due = await repository.due_rollouts(session)
        for rollout in due:  # oldest first
            if len(self._running) >= self.parallel:
                break  # a rollout that ends wakes the worker for the next
            if rollout.environment_id not in self._running:
                self._running[rollout.environment_id] = asyncio.create_task(
                    self._drive(rollout.environment_id, rollout.deployment_id),
                    name=f"rollout {rollout.deployment_id}")
                self._running_deployment[rollout.environment_id] = rollout.deployment_id

    async def _drive(self, environment_id: UUID, deployment_id: UUID) -> None:
        try:
            await run_rollout(self.ctx, deployment_id)
            self._attempts.pop(deployment_id, None)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            attempt = self._attempts.get(deployment_id, 0) + 1
            self._attempts[deployment_id] = attempt
            log.exception("rollout %s crashed (attempt %d of %d)", deployment_id, attempt, self.max_attempts)
            if attempt >= self.max_attempts:
                self._attempts.pop(deployment_id, None)
                try:
                    await fail_rollout(self.ctx, deployment_id, f"controller error: {type(e).__name__}: {e}")
                except Exception:
                    log.exception("rollout %s could not be marked failed; will retry", deployment_id)
            else:
                await asyncio.sleep(RETRY_SECONDS[min(attempt - 1, len(RETRY_SECONDS) - 1)])
        finally:
            self._running.pop(environment_id, None)
            self._running_deployment.pop(environment_id, None)
            self.wake()  # the environment's next rollout may start
