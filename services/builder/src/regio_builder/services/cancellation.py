"""Cancelling a deployment's build. The control panel cancels a deployment when a user asks
or when a newer deployment supersedes a queued one: a queued build ends failed without
running, a running one is stopped by the worker running it, and a build requested after
the cancel (the two travel on different streams) ends failed as soon as it is requested.
Each ends with BuildFinished, as any build does, so whoever waits for it sees an end."""
import logging
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import BuildRequested
from regio_common.outbox import Outbox

from ..db import repository
from ..domain.states import BuildState
from . import builds
from .builds import Outcome

log = logging.getLogger(__name__)


def error(reason: str) -> str:
    """The build's error, as BuildFinished and the build record carry it."""
    return f"cancelled: {reason}"


async def cancel(session: AsyncSession, outbox: Outbox, deployment_id: UUID, reason: str) -> bool:
    """Cancels the deployment's build in the caller's transaction; True when the build is running
    and the worker running it must stop it. A build that ended already stays as it ended."""
    await repository.lock_deployment(session, deployment_id)
    if not await repository.record_cancellation(session, deployment_id, reason):
        return False  # cancelled before: that cancel did the work
    build = await repository.lock_by_deployment(session, deployment_id)
    if build is None:
        log.info("deployment %s cancelled before its build was requested", deployment_id)
        return False
    if build.state == BuildState.QUEUED:
        await _end_unstarted(session, outbox, build, reason)
        return False
    return build.state == BuildState.RUNNING


async def refuse_request(session: AsyncSession, outbox: Outbox, request: BuildRequested) -> bool:
    """A build requested for a deployment cancelled before is recorded and ends failed at once,
    without running; True then. Holds the deployment's lock for the rest of the transaction,
    so a cancel handled meanwhile finds the build this request queues."""
    await repository.lock_deployment(session, request.deployment_id)
    reason = await repository.cancellation_reason(session, request.deployment_id)
    if reason is None:
        return False
    build = await builds.record_requested(session, request)
    if build is not None:  # else it has a build already, which the cancel ended or is stopping
        await _end_unstarted(session, outbox, build, reason)
    return True


async def reason(session: AsyncSession, deployment_id: UUID) -> str | None:
    """Why the deployment was cancelled; None while it is not."""
    return await repository.cancellation_reason(session, deployment_id)


async def _end_unstarted(session: AsyncSession, outbox: Outbox, build: Row, reason: str) -> None:
    await builds.append_log(session, outbox, build.deployment_id, build.id,
                            [f"Build cancelled before it started: {reason}"])
    await builds.finish(session, outbox, build, Outcome(success=False, error=error(reason)), was=BuildState.QUEUED)
