"""RoutesChanged: the controller announces the full route of one environment."""
import logging

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import Message, RoutesApplied, RoutesChanged
from regio_common.outbox import Outbox
from regio_common.subscriber import Handler

from ..routes import Route
from ..routes.repository import RouteRepository
from ..sync import CaddyLoader

log = logging.getLogger(__name__)

CONSUMER = "ingress-routes"


def routes_changed_handler(loader: CaddyLoader, outbox: Outbox) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        assert isinstance(message, RoutesChanged)
        try:
            route = Route.from_message(message)
        except ValidationError as e:
            # No retry makes a bad route good; Caddy would refuse it, or worse, match too much.
            log.error("route of %s revision %d refused: %s", message.environment_id, message.revision, e)
            return
        repository = RouteRepository(session)
        if await repository.save_if_newer(route):
            loader.wake_after_commit(session)
            return
        held, applied = await repository.get_with_applied(route.environment_id)
        if held is not None and held.revision == route.revision and applied == route.revision:
            # Announced again although live already: the controller is still waiting, say it again.
            await outbox.add(session, RoutesApplied(environment_id=route.environment_id, revision=route.revision))
        else:
            log.info("route of %s: revision %d ignored, %s is held", route.environment_id, route.revision,
                     held.revision if held else "none")

    return handle
