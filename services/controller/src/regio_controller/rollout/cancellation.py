"""Cancelling a deployment's rollout. The control panel cancels a deployment when a user asks
or when a newer deployment supersedes a queued one, and marks it ended at once; here its
rollout ends failed the usual way (run.end_failed): its new instances go, routes that had
moved move back, and the previous release keeps serving. A rollout that has ended stays
as it ended, and so does one whose new release already carries the traffic: its old
instances are draining, and nothing could serve if it were undone.

The cancel is an event and the rollout request a command: the cancel may arrive first.
Every cancelled deployment is remembered, and a request arriving after its cancel is
refused as a retired environment's is (environments/retirement.py)."""
import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import RolloutRequested
from regio_common.outbox import Outbox

from ..db import repository
from ..db.models import Rollout
from ..domain.states import UNFINISHED_ROLLOUT_STATES
from ..environments.retirement import refuse_rollout
from .context import RolloutContext
from .run import end_failed

log = logging.getLogger(__name__)


def error(reason: str) -> str:
    """The rollout's error, as RolloutFinished and the deployment log carry it."""
    return f"cancelled: {reason}"


async def cancel(session: AsyncSession, ctx: RolloutContext, deployment_id: UUID, reason: str) -> UUID | None:
    """Cancels the deployment's rollout in the caller's transaction. Returns the environment of the
    rollout it ended, whose task is to be stopped and whose runners' desired state rewritten
    once the transaction is committed; None when there was nothing to end."""
    await repository.lock_deployment(session, deployment_id)
    if not await repository.record_cancellation(session, deployment_id, reason):
        return None  # cancelled before: that cancel did the work
    # Locking the rollout waits for a step that is changing it: it then finds it ended.
    rollout = await repository.get_rollout(session, deployment_id, lock=True)
    if rollout is None:
        log.info("deployment %s cancelled before its rollout was requested", deployment_id)
        return None
    if rollout.state not in UNFINISHED_ROLLOUT_STATES:
        return None
    if await _carries_the_traffic(session, rollout):
        await ctx.log(session, deployment_id, f"Cancel came too late ({reason}): the new release already "
                                              "carries the environment's traffic; the rollout completes")
        log.info("deployment %s cancelled too late: its release carries the traffic", deployment_id)
        return None
    await end_failed(session, ctx, deployment_id, error(reason))
    log.info("rollout %s cancelled: %s", deployment_id, reason)
    return rollout.environment_id


async def refuse_if_cancelled(session: AsyncSession, outbox: Outbox, request: RolloutRequested) -> bool:
    """A rollout requested for a deployment cancelled before the request arrived ends failed at
    once and is not recorded; True then. Holds the deployment's lock for the rest of the
    transaction, so a cancel handled meanwhile finds the rollout this request records."""
    await repository.lock_deployment(session, request.deployment_id)
    reason = await repository.cancellation_reason(session, request.deployment_id)
    if reason is None or await repository.get_rollout(session, request.deployment_id) is not None:
        return False  # not cancelled, or a copy of a request recorded before its cancel, which ended it
    await refuse_rollout(session, outbox, request.deployment_id, request.environment_id, error(reason))
    return True


async def _carries_the_traffic(session: AsyncSession, rollout: Rollout) -> bool:
    """The ingress applied the rollout's routes. Finalizing records that in the transaction that
    starts draining the old instances, under the rollout's lock, which a cancel holds here."""
    if rollout.route_revision is None:
        return False
    return await repository.applied_revision(session, rollout.environment_id) >= rollout.route_revision
