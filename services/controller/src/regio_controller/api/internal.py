"""Internal API for other services: the route table (polled by the ingress) and the runners."""
from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from pydantic import BaseModel

from regio_common.app import SessionDep
from regio_common.service_auth import ServiceAuth

from ..db import repository
from ..routes.table import Route, route_of

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
    cordoned: bool  # takes no new instances
    draining: bool  # its instances are being moved to other runners


@router.get("/routes", response_model=list[Route])
async def list_routes(session: SessionDep) -> list[Route]:
    """Every environment that serves a release, with its healthy instances as upstreams."""
    return [route_of(w, instances) for w, instances in await repository.routed_workloads(session)]


@router.get("/runners", response_model=list[RunnerView])
async def list_runners(session: SessionDep) -> list[RunnerView]:
    return [
        _view(r, used, count) for r, used, count in await repository.runners_with_usage(session)
    ]


def _view(r, used: int, count: int) -> RunnerView:
    return RunnerView(name=r.name, address=r.address, state=r.state, memory_mb=r.memory_mb, memory_used_mb=used,
                      cpus=r.cpus, labels=r.labels, instances=count, last_heartbeat_at=r.last_heartbeat_at,
                      cordoned=r.cordoned, draining=r.draining)


# Operators take a runner out of service in two steps: cordon (nothing new goes there), then
# drain (the healer moves each instance elsewhere: a replacement passes its health check and
# joins the routes before the old one leaves them, so the sites served there never go down).
_FLAGS = {"cordon": (True, False), "drain": (True, True), "uncordon": (False, False)}


@router.post("/runners/{name}/{action}", response_model=RunnerView)
async def change_runner(name: str, action: str, session: SessionDep, request: Request,
                        after: BackgroundTasks) -> RunnerView:
    """Cordon, drain or uncordon (back in service) a runner."""
    if action not in _FLAGS:
        raise HTTPException(404, detail={"action": [f"one of {', '.join(_FLAGS)}"]})
    cordoned, draining = _FLAGS[action]
    runner = await repository.set_runner_flags(session, name, cordoned=cordoned, draining=draining)
    if runner is None:
        raise HTTPException(404, detail={"name": [f"no runner {name!r}"]})
    after.add_task(request.app.state.controller.healer.wake)  # once committed: the healer moves instances
    [(_, used, count)] = [row for row in await repository.runners_with_usage(session) if row[0].name == name]
    return _view(runner, used, count)
