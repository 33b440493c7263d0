"""What the builder consumes: BuildRequested commands and DeploymentCancelled events of its region."""
import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import bus
from regio_common.messages import BuildRequested, DeploymentCancelled, Message, subject_for
from regio_common.outbox import Outbox
from regio_common.runtime import Runtime
from regio_common.subscriber import Handler

from ..services import builds, cancellation

log = logging.getLogger(__name__)


CONSUMER = "builder"
CANCELLATIONS_CONSUMER = "builder-cancellations"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Runs ``callback`` once the handler's transaction is committed (not if it rolls back)."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


def build_requested_handler(outbox: Outbox, on_queued: Callable[[], None]) -> Handler:
    """Queue the build and return, so the message is acked; the worker runs it."""

    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, BuildRequested):
            log.warning("ignoring %s on the builds subject", message.kind)
            return
        if await cancellation.refuse_request(session, outbox, message):
            log.info("deployment %s was cancelled; its build request %s ends failed", message.deployment_id,
                     message.id)
            return
        build = await builds.record_requested(session, message)
        if build is None:
            log.info("deployment %s has a build already; request %s ignored", message.deployment_id, message.id)
            return
        if await builds.refuse_invalid_commit(session, outbox, build, message):
            log.info("build request %s of deployment %s asked for an invalid commit", message.id,
                     message.deployment_id)
            return
        # Wake the worker once the row is visible, not before the commit.
        after_commit(session, on_queued)

    return handle


def deployment_cancelled_handler(outbox: Outbox, on_running_cancelled: Callable[[], None]) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, DeploymentCancelled):
            log.warning("ignoring %s on the deployment cancellations subject", message.kind)
            return
        if await cancellation.cancel(session, outbox, message.deployment_id, message.reason):
            # The worker looks now rather than at its next poll; the cancel must be committed first.
            after_commit(session, on_running_cancelled)

    return handle


def subscribe(runtime: Runtime, on_queued: Callable[[], None], on_running_cancelled: Callable[[], None]) -> None:
    region = runtime.settings.region
    runtime.subscribe(bus.COMMANDS.name, bus.durable_name(CONSUMER, region), subject_for(BuildRequested, region),
                      build_requested_handler(runtime.outbox, on_queued))
    runtime.subscribe(bus.EVENTS.name, bus.durable_name(CANCELLATIONS_CONSUMER, region),
                      subject_for(DeploymentCancelled, region),
                      deployment_cancelled_handler(runtime.outbox, on_running_cancelled))
