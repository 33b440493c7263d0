"""The controller's internal API: the full route state of the region."""
import logging
from dataclasses import dataclass, field
from uuid import UUID

import httpx
from pydantic import ValidationError

from regio_common.service_auth import SERVICE_TOKEN_HEADER

from .routes import Route

log = logging.getLogger(__name__)



class ControllerUnavailable(Exception):
    pass


@dataclass
class RouteState:
    routes: list[Route]
    # Environments the controller listed with a route the ingress refuses: not updated, not removed either.
    refused: set[UUID] = field(default_factory=set)

    @property
    def environments(self) -> set[UUID]:
        return {route.environment_id for route in self.routes} | self.refused


class ControllerClient:
    def __init__(self, controller_url: str, service_token: str, timeout: float = 5.0):
        self._client = httpx.AsyncClient(base_url=controller_url.rstrip("/"), timeout=timeout,
                                         headers={SERVICE_TOKEN_HEADER: service_token})

    async def route_state(self) -> RouteState:
        try:
            response = await self._client.get("/internal/v1/routes")
            response.raise_for_status()
            entries = response.json()
            if not isinstance(entries, list):
                raise ValueError("expected a list of routes")
            state = RouteState(routes=[])
            for entry in entries:
                try:
                    state.routes.append(Route.model_validate(entry))
                except ValidationError as e:
                    state.refused.add(UUID(str(entry["environment_id"])))  # no id: the whole answer is unusable
                    log.error("route of %s from the controller refused: %s", entry["environment_id"], e)
            return state
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise ControllerUnavailable(f"cannot read routes from the controller: {e!r}") from e

    async def close(self) -> None:
        await self._client.aclose()
