"""An environment's runtime logs: what its instances printed and what the platform said
about them. The divio client shows the newest lines, then follows ``next``."""
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Query, Request
from pydantic import BaseModel

from regio_common import bus

from ...services import lookups, runtime_logs
from ...services.access import Action
from ..deps import CallerDep, SessionDep
from ..routing import Router

router = Router(prefix="/apps/v3", tags=["environments"])

MAX_LINES = bus.LOGS.max_msgs_per_subject  # what the stream keeps of an environment


class LogEntry(BaseModel):
    timestamp: datetime
    service: str  # "web": the application's output; "platform": the platform's lines; "ingress": requests
    instance: UUID | None  # the instance that printed it, or that it is about
    message: str


class LogPage(BaseModel):
    count: int
    next: str  # always: following the log means requesting it again and again
    previous: str | None
    results: list[LogEntry]


@router.get("/environments/{uuid}/logs/", response_model=LogPage)
async def environment_logs(
    uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
    after: Annotated[int | None, Query(ge=0, description="Only lines after this position (from `next`).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LINES)] = 1000,
    service: Annotated[Literal["web", "platform", "ingress"] | None, Query(description=(
        "Only the application's output (web), the platform's lines about its instances (platform), "
        "or the ingress's line per request (ingress)."))] = None,
) -> LogPage:
    """The newest lines, oldest first; ``next`` returns the lines written since."""
    env, app = await lookups.environment(session, caller, uuid, Action.VIEW)
    stored, position = await runtime_logs.lines(session, request.app.state.region_links.jetstream, env, app, after, limit,
                                                service)
    position = position or 0
    return LogPage(
        count=len(stored),
        next=str(request.url.include_query_params(after=position)),
        previous=None,
        results=[LogEntry(timestamp=s.line.timestamp, service=s.line.service, instance=s.line.instance,
                          message=s.line.message) for s in stored],
    )
