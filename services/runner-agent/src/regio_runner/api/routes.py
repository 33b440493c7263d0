"""The runner agent's internal HTTP API."""
from fastapi import APIRouter, HTTPException, status

from regio_common.runners import RunnerHeartbeat
from regio_common.service_auth import ServiceAuth

from .dependencies import AgentDep

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[ServiceAuth])


@router.get("/instances", response_model=RunnerHeartbeat)
async def list_instances(agent: AgentDep) -> RunnerHeartbeat:
    """Every container this runner runs, as its last heartbeat reported them."""
    if agent.heartbeat is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the runner has not observed its containers yet")
    return agent.heartbeat
