"""GET /internal/v1/upstreams: requests in flight per upstream address, as Caddy counts them.
The controller asks this while it drains old instances, to stop them only once idle."""
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel

from regio_common.service_auth import ServiceAuth

from ..caddy.admin import CaddyUnavailable

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[ServiceAuth])


class UpstreamInFlight(BaseModel):
    address: str
    in_flight: int


@router.get("/upstreams", response_model=list[UpstreamInFlight])
async def list_upstreams(request: Request) -> list[UpstreamInFlight]:
    """Every upstream Caddy still knows, including ones the routes dropped that have requests
    left; an address not listed has none."""
    try:
        loads = await request.app.state.caddy.upstreams()
    except CaddyUnavailable as e:
        # Not an empty list: that would tell a draining controller the old instances are idle.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from e
    return [UpstreamInFlight(address=u.address, in_flight=u.in_flight) for u in loads]
