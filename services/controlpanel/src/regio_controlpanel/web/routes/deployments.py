"""Deploying an environment (or redeploying an earlier deployment's release: a rollback),
and following a deployment's progress and log while it runs."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep

from ...api.routes.deployments import visible_deployment
from ...db.models import DeploymentLogChunk, Environment
from ...domain.deployments import step_timings
from ...domain.errors import ApiError
from ...services import lookups
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)


@router.post("/environments/{uuid}/deploy")
async def deploy(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                 build_mode: Annotated[str, Form()] = "AUTO", redeploy: Annotated[str, Form()] = ""):
    """With ``redeploy``: a new release from that deployment's, without a build (Divio's
    redeploy, and a rollback when it is older than what serves)."""
    try:
        source = UUID(redeploy) if redeploy else None
    except ValueError:
        raise ApiError("Choose a deployment to redeploy.", "redeploy") from None
    # In the path here (a 404 when not visible), where the API has it in the body (a 400).
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    deployment = await request.app.state.deployments.request(session, web.caller, env.id, build_mode, redeploy=source)
    audit.record(app.organisation_id, "deployment.create", "deployment", deployment.id,
                 f"Deployment of {app.slug}/{env.slug} requested "
                 f"({f'redeploying {source}' if source else deployment.build_mode})",
                 {"environment": env.id, "build_mode": deployment.build_mode, "redeploy": source})
    return RedirectResponse(f"/web/deployments/{deployment.id}", status_code=303)


@router.get("/deployments/{uuid}")
async def deployment_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    deployment, app = await visible_deployment(session, web.caller, uuid)
    env = await session.get(Environment, deployment.environment_id)
    return render(request, "deployment.html", web, deployment=deployment, app=app, env=env)


@router.get("/deployments/{uuid}/progress")
async def deployment_progress(uuid: UUID, session: SessionDep, web: WebCallerDep,
                              offset: Annotated[int, Query(ge=0)] = 0) -> dict:
    """For the page's script: the state, and the log appended after ``offset`` (as the API's
    /deployments/{uuid}/logs, read with the session instead of a token)."""
    deployment, _ = await visible_deployment(session, web.caller, uuid)
    chunks = (await session.execute(select(DeploymentLogChunk.id, DeploymentLogChunk.text).where(
        DeploymentLogChunk.deployment_id == uuid, DeploymentLogChunk.id > offset)
        .order_by(DeploymentLogChunk.id))).all()
    return {
        "status": deployment.status, "percent": deployment.percent, "success": deployment.success,
        "error": deployment.error, "ended": deployment.ended_at is not None, "commit": deployment.commit,
        "steps": [{"name": n, "started_at": a, "ended_at": e} for n, a, e in step_timings(deployment.steps,
                                                                                           deployment.ended_at)],
        "log": "".join(c.text for c in chunks), "next_offset": chunks[-1].id if chunks else offset,
    }
