"""The controller's internal API: the full route state of the region."""
import httpx
from pydantic import TypeAdapter

from .routes import Route

SERVICE_TOKEN_HEADER = "X-Regio-Service-Token"

_ROUTE_LIST = TypeAdapter(list[Route])


class ControllerUnavailable(Exception):
    pass


class ControllerClient:
    def __init__(self, controller_url: str, service_token: str, timeout: float = 5.0):
        self._client = httpx.AsyncClient(base_url=controller_url.rstrip("/"), timeout=timeout,
                                         headers={SERVICE_TOKEN_HEADER: service_token})

    async def routes(self) -> list[Route]:
        try:
            response = await self._client.get("/internal/v1/routes")
            response.raise_for_status()
            return _ROUTE_LIST.validate_json(response.content)
        except (httpx.HTTPError, ValueError) as e:
            raise ControllerUnavailable(f"cannot read routes from the controller: {e!r}") from e

    async def close(self) -> None:
        await self._client.aclose()
