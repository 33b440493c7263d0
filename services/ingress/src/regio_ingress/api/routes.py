"""GET /internal/v1/routes: the route table this ingress holds, and which revision Caddy carries."""
from fastapi import APIRouter

from regio_common.app import SessionDep
from regio_common.service_auth import ServiceAuth

from ..routes import Route
from ..routes.repository import RouteRepository

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[ServiceAuth])


class HeldRoute(Route):
    applied_revision: int | None  # the revision Caddy carries; behind `revision` while a load is pending


@router.get("/routes", response_model=list[HeldRoute])
async def list_routes(session: SessionDep) -> list[HeldRoute]:
    held = await RouteRepository(session).all_with_applied()
    return [HeldRoute(**route.model_dump(), applied_revision=applied) for route, applied in held]
