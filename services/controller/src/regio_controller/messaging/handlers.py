"""Handlers of the messages the controller consumes. Each runs in the subscriber's
transaction (idempotent through the inbox) and only records; the work happens in
the rollout worker, so a slow rollout never holds a message."""
import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import (
    DeploymentLogAppended,
    Message,
    RolloutRequested,
    RoutesApplied,
)
from regio_common.outbox import Outbox
from regio_common.subscriber import Handler

from ..db import repository
from ..routes.applied import AppliedRoutes

log = logging.getLogger(__name__)


def on_rollout_requested(outbox: Outbox, default_sanity_timeout: float, wake_worker: Callable[[], None]) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, RolloutRequested):
            log.warning("ignoring %s on the rollouts subject", message.kind)
            return
        timeout = message.sanity_timeout_seconds if message.sanity_timeout_seconds > 0 else default_sanity_timeout
        if await repository.record_rollout(session, message, timeout):
            await outbox.add(session, DeploymentLogAppended(
                deployment_id=message.deployment_id,
                lines=[f"Rollout of release {message.release_id} queued: {message.instances} instance(s) "
                       f"of {message.memory_mb} MB"]))
        # The worker reads the rollout from the database: wake it once the row is committed.
        event.listen(session.sync_session, "after_commit", lambda _session: wake_worker(), once=True)

    return handle


def on_routes_applied(applied: AppliedRoutes) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, RoutesApplied):
            log.warning("ignoring %s on the routes-applied subject", message.kind)
            return
        await repository.record_applied_revision(session, message.environment_id, message.revision)
        # The proxy carries the revision whether or not this row commits: waiters may go on.
        await applied.record(message.environment_id, message.revision)

    return handle
