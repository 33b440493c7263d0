"""An environment's runtime logs, followed live by the page's script."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request

from regio_common.app import SessionDep

from ...api.routes.logs import MAX_LINES
from ...services import lookups, runtime_logs
from ...services.access import Action
from ..deps import WebCallerDep
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)


@router.get("/environments/{uuid}/logs")
async def logs_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    env, app = await lookups.environment(session, web.caller, uuid, Action.VIEW)
    return render(request, "logs.html", web, env=env, app=app)


@router.get("/environments/{uuid}/logs/lines")
async def log_lines(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep,
                    after: Annotated[int | None, Query(ge=0)] = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_LINES)] = 500) -> dict:
    """The newest lines, or with ``after`` those written since (as /environments/{uuid}/logs/)."""
    env, app = await lookups.environment(session, web.caller, uuid, Action.VIEW)
    stored, position = await runtime_logs.lines(session, request.app.state.region_links.jetstream, env, app, after, limit)
    return {"after": position or 0,
            "lines": [{"timestamp": s.line.timestamp, "service": s.line.service, "message": s.line.message}
                      for s in stored]}
