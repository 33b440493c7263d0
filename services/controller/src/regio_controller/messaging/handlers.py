"""Handlers of the messages the controller consumes. Each runs in the subscriber's
transaction (idempotent through the inbox) and changes only the database; the work
that takes time happens in the rollout worker, so a slow rollout never holds a message."""
import logging
from collections.abc import Callable
from uuid import UUID

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import (
    DeploymentCancelled,
    DeploymentLogAppended,
    EnvironmentHostsChanged,
    EnvironmentRetired,
    EnvironmentScaled,
    EnvironmentTrafficSet,
    Message,
    RolloutRequested,
    RoutesApplied,
)
from regio_common.outbox import Outbox
from regio_common.subscriber import Handler

from ..db import repository
from ..environments.hosts import change_hosts
from ..environments.retirement import refuse_rollout, retire
from ..environments.scaling import scale
from ..environments.traffic import set_traffic
from ..rollout import cancellation
from ..rollout.context import RolloutContext
from ..routes.applied import AppliedRoutes

log = logging.getLogger(__name__)


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Runs ``callback`` once the handler's transaction is committed (not if it rolls back)."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


def on_rollout_requested(outbox: Outbox, default_sanity_timeout: float, wake_worker: Callable[[], None]) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, RolloutRequested):
            log.warning("ignoring %s on the rollouts subject", message.kind)
            return
        await repository.lock_environment(session, message.environment_id)
        if await repository.is_retired(session, message.environment_id):
            # Requested before the environment was deleted, handled after: it must not bring it back.
            await refuse_rollout(session, outbox, message.deployment_id, message.environment_id)
            return
        if await cancellation.refuse_if_cancelled(session, outbox, message):
            return
        timeout = message.sanity_timeout_seconds if message.sanity_timeout_seconds > 0 else default_sanity_timeout
        if await repository.record_rollout(session, message, timeout):
            await outbox.add(session, DeploymentLogAppended(
                deployment_id=message.deployment_id,
                lines=[f"Rollout of release {message.release_id} queued: {message.instances} instance(s) "
                       f"of {message.memory_mb} MB"]))
        # The worker reads the rollout from the database: wake it once the row is committed.
        after_commit(session, wake_worker)

    return handle


def on_environment_command(outbox: Outbox, stop_rollout: Callable[[UUID], None],
                           reconcile_runners: Callable[[], None], heal: Callable[[], None],
                           watch_traffic: Callable[[], None] = lambda: None) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, EnvironmentRetired):
            if await retire(session, outbox, message.environment_id, tombstone=not message.moved_away):
                # Once committed: the rollout task stops now rather than at its next step, and
                # every runner's desired state is rewritten without the environment's instances.
                after_commit(session, lambda: (stop_rollout(message.environment_id), reconcile_runners()))
        elif isinstance(message, EnvironmentHostsChanged):
            await change_hosts(session, outbox, message)
        elif isinstance(message, EnvironmentScaled):
            if await scale(session, outbox, message.environment_id, message.instances):
                after_commit(session, heal)
        elif isinstance(message, EnvironmentTrafficSet):
            if await set_traffic(session, outbox, message):
                after_commit(session, watch_traffic)
        else:
            log.warning("ignoring %s on the environments subject", message.kind)

    return handle


def on_deployment_cancelled(ctx: RolloutContext, stop_rollout: Callable[[UUID, UUID], None],
                            reconcile_runners: Callable[[], None]) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, DeploymentCancelled):
            log.warning("ignoring %s on the deployment cancellations subject", message.kind)
            return
        environment_id = await cancellation.cancel(session, ctx, message.deployment_id, message.reason)
        if environment_id is not None:
            # Once committed: the rollout's task stops now rather than at its next step, and the
            # runners' desired state is rewritten without its instances.
            after_commit(session, lambda: (stop_rollout(environment_id, message.deployment_id), reconcile_runners()))

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
