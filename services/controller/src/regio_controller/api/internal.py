"""Internal API for other services: the route table (polled by the ingress) and the runners."""
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from regio_common.app import SessionDep
from regio_common.service_auth import ServiceAuth

from ..db import repository
from ..routes.table import Route, upstreams_of

router = APIRouter(prefix="/internal/v1", dependencies=[ServiceAuth], tags=["internal"])


class RunnerView(BaseModel):
    name: str
    address: str
    state: str
    memory_mb: int
    memory_used_mb: int
    cpus: float
    labels: dict[str, str]
    instances: int
    last_heartbeat_at: datetime


@router.get("/routes", response_model=list[Route])
async def list_routes(session: SessionDep) -> list[Route]:
    """Every environment that serves a release, with its healthy instances as upstreams."""
    return [
        Route(environment_id=w.environment_id, hosts=w.hosts, upstreams=upstreams_of(instances),
              revision=w.route_revision)
        for w, instances in await repository.routed_workloads(session)
    ]


@router.get("/runners", response_model=list[RunnerView])
async def list_runners(session: SessionDep) -> list[RunnerView]:
    return [
        RunnerView(name=r.name, address=r.address, state=r.state, memory_mb=r.memory_mb, memory_used_mb=used,
                   cpus=r.cpus, labels=r.labels, instances=count, last_heartbeat_at=r.last_heartbeat_at)
        for r, used, count in await repository.runners_with_usage(session)
    ]
