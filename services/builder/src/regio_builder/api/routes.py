"""Internal HTTP API: other services read a deployment's build here."""
from uuid import UUID

from fastapi import APIRouter

from regio_common.app import SessionDep
from regio_common.service_auth import ServiceAuth

from ..services import builds
from .schemas import BuildOut

router = APIRouter(prefix="/internal/v1", dependencies=[ServiceAuth], tags=["internal"])


@router.get("/builds/{deployment_id}", response_model=BuildOut)
async def get_build(deployment_id: UUID, session: SessionDep) -> BuildOut:
    return BuildOut.model_validate(await builds.get(session, deployment_id))
