"""What the builder consumes: BuildRequested commands of its region."""
import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import bus
from regio_common.messages import BuildRequested, Message, subject_for
from regio_common.runtime import Runtime
from regio_common.subscriber import Handler

from ..services import builds

log = logging.getLogger(__name__)


CONSUMER = "builder"


def build_requested_handler(on_queued: Callable[[], None]) -> Handler:
    """Queue the build and return, so the message is acked; the worker runs it."""

    async def handle(session: AsyncSession, message: Message) -> None:
        if not isinstance(message, BuildRequested):
            log.warning("ignoring %s on the builds subject", message.kind)
            return
        build = await builds.record_requested(session, message)
        if build is None:
            log.info("deployment %s has a build already; request %s ignored", message.deployment_id, message.id)
            return
        # Wake the worker once the row is visible, not before the commit.
        event.listen(session.sync_session, "after_commit", lambda _session: on_queued(), once=True)

    return handle


def subscribe(runtime: Runtime, on_queued: Callable[[], None]) -> None:
    region = runtime.settings.region
    runtime.subscribe(bus.COMMANDS.name, bus.durable_name(CONSUMER, region), subject_for(BuildRequested, region),
                      build_requested_handler(on_queued))
