from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import (
    Application,
    Deployment,
    DeploymentLogChunk,
    Environment,
    Release,
)
from ...domain.deployments import step_timings
from ...domain.errors import NotFound
from ...services.access import Action, Caller
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import (
    DeploymentCancel,
    DeploymentEnvironmentVariables,
    DeploymentIn,
    DeploymentLog,
    DeploymentOut,
    DeploymentStep,
)

router = Router(prefix="/apps/v3", tags=["deployments"])


async def deployment_out(session: AsyncSession, d: Deployment, application_id: UUID) -> DeploymentOut:
    release = await session.get(Release, d.release_id) if d.release_id else None
    return DeploymentOut(
        uuid=d.id, environment=d.environment_id, application=application_id, build_mode=d.build_mode,
        status=d.status, percent=d.percent, success=d.success, error=d.error, commit=d.commit,
        release=d.release_id, redeploy_of=d.source_deployment_id,
        environment_variables=release.env_names if release else [],
        steps=[DeploymentStep(name=n, started_at=a, ended_at=e) for n, a, e in step_timings(d.steps, d.ended_at)],
        created_at=d.created_at, started_at=d.started_at, ended_at=d.ended_at)


async def visible_deployment(session: AsyncSession, caller: Caller, uuid: UUID,
                             action: Action = Action.VIEW) -> tuple[Deployment, Application]:
    row = (await session.execute(
        select(Deployment, Application, Environment).join(Environment, Environment.id == Deployment.environment_id)
        .join(Application, Application.id == Environment.application_id).where(Deployment.id == uuid))).first()
    if row is None:
        raise NotFound()
    caller.require_environment(row[2], row[1], action)
    return row[0], row[1]


@router.post("/deployments/", response_model=DeploymentOut, status_code=201)
async def create_deployment(body: DeploymentIn, request: Request, session: SessionDep, caller: CallerDep,
                            audit: AuditDep) -> DeploymentOut:
    deployment = await request.app.state.deployments.request(session, caller, body.environment, body.build_mode,
                                                             redeploy=body.redeploy)
    env = await session.get(Environment, deployment.environment_id)
    app = await session.get(Application, env.application_id)
    audit.record(app.organisation_id, "deployment.create", "deployment", deployment.id,
                 f"Deployment of {app.slug}/{env.slug} requested "
                 f"({f'redeploying {body.redeploy}' if body.redeploy else deployment.build_mode})",
                 {"environment": env.id, "build_mode": deployment.build_mode, "redeploy": body.redeploy})
    return await deployment_out(session, deployment, app.id)


@router.get("/deployments/", response_model=Page[DeploymentOut])
async def list_deployments(request: Request, session: SessionDep, caller: CallerDep,
                           params: Annotated[PageParams, Depends()], application: UUID | None = None,
                           environment: UUID | None = None) -> dict:
    query = (select(Deployment).join(Environment, Environment.id == Deployment.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if application is not None:
        query = query.where(Environment.application_id == application)
    if environment is not None:
        query = query.where(Deployment.environment_id == environment)

    async def serialize(rows):
        apps = dict((await session.execute(select(Environment.id, Environment.application_id).where(
            Environment.id.in_({d.environment_id for d in rows})))).all())
        return [await deployment_out(session, d, apps[d.environment_id]) for d in rows]

    return await paginate(session, query.order_by(Deployment.created_at.desc()), request, params, serialize)


@router.get("/deployments/{uuid}/", response_model=DeploymentOut)
async def get_deployment(uuid: UUID, session: SessionDep, caller: CallerDep) -> DeploymentOut:
    deployment, app = await visible_deployment(session, caller, uuid)
    return await deployment_out(session, deployment, app.id)


@router.get("/deployments/{uuid}/logs", response_model=DeploymentLog)
async def deployment_logs(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                          offset: Annotated[int, Query(ge=0, description="Only chunks after this one.")] = 0) -> DeploymentLog:
    """The whole log, or with ``offset`` what was appended since: poll with ``next_offset`` to follow."""
    deployment, _ = await visible_deployment(session, caller, uuid)
    chunks = (await session.execute(select(DeploymentLogChunk.id, DeploymentLogChunk.text).where(
        DeploymentLogChunk.deployment_id == uuid, DeploymentLogChunk.id > offset)
        .order_by(DeploymentLogChunk.id))).all()
    next_offset = chunks[-1].id if chunks else offset
    return DeploymentLog(uuid=uuid, logs="".join(c.text for c in chunks), next_offset=next_offset,
                         next=str(request.url.include_query_params(offset=next_offset)),
                         ended=deployment.ended_at is not None)


@router.post("/deployments/{uuid}/cancel/", response_model=DeploymentOut)
async def cancel_deployment(uuid: UUID, body: DeploymentCancel, request: Request, session: SessionDep,
                            caller: CallerDep, audit: AuditDep) -> DeploymentOut:
    """Ends the deployment now: its build stops, or its rollout ends with its new instances
    removed. The release that served before keeps serving. 409 when it already ended."""
    deployment, app = await visible_deployment(session, caller, uuid, Action.OPERATE)
    reason = body.reason.strip() or f"by {caller.user.email}"
    await request.app.state.deployments.cancel(session, deployment, reason)
    audit.record(app.organisation_id, "deployment.cancel", "deployment", deployment.id,
                 f"Deployment {deployment.id} of {app.slug} cancelled", {"reason": reason})
    return await deployment_out(session, deployment, app.id)


@router.get("/deployments/{uuid}/environment-variables", response_model=DeploymentEnvironmentVariables)
async def deployment_variables(uuid: UUID, request: Request, session: SessionDep,
                               caller: CallerDep) -> DeploymentEnvironmentVariables:
    deployment, _ = await visible_deployment(session, caller, uuid)
    release = await session.get(Release, deployment.release_id) if deployment.release_id else None
    env = request.app.state.vault.decrypt_env(release.env_encrypted) if release else {}
    masked = set(release.sensitive_names) if release else set()
    return DeploymentEnvironmentVariables(
        environment=deployment.environment_id,
        environment_variables={k: ("********" if k in masked else v) for k, v in env.items()})
