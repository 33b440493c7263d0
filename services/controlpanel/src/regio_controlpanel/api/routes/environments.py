from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import (
    Application,
    Deployment,
    Environment,
    EnvironmentVariable,
    Region,
)
from ...services import applications as service
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import (
    DeploymentRef,
    EnvironmentOut,
    EnvironmentVariableIn,
    EnvironmentVariableOut,
)
from .applications import site_url

router = Router(prefix="/apps/v3", tags=["environments"])


async def environment_out(session: AsyncSession, request: Request, env: Environment, app: Application) -> EnvironmentOut:
    region = await session.get(Region, app.region_id)
    last = (await session.execute(
        select(Deployment).where(Deployment.environment_id == env.id, Deployment.ended_at.is_not(None))
        .order_by(Deployment.ended_at.desc()).limit(1))).scalar_one_or_none()
    url = site_url(request, app, env, region)
    out = EnvironmentOut(
        uuid=env.id, application=app.id, slug=env.slug, branch=env.branch, instances=env.instances,
        memory_mb=env.memory_mb, port=env.port, health_check_path=env.health_check_path, site_url=url,
        last_finished_deployment=DeploymentRef(uuid=last.id, status=last.status, success=last.success,
                                               ended_at=last.ended_at) if last else None,
        created_at=env.created_at)
    setattr(out, f"{env.slug}_status", {"uuid": str(env.id), "site_url": url})
    return out


@router.get("/environments/", response_model=Page[EnvironmentOut])
async def list_environments(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()],
                            application: UUID | None = None, slug: str | None = None) -> dict:
    query = (select(Environment).join(Application, Application.id == Environment.application_id)
             .where(Application.organisation_id.in_(caller.organisations)))
    if application is not None:
        query = query.where(Environment.application_id == application)
    if slug is not None:
        query = query.where(Environment.slug == slug)

    async def serialize(rows):
        return [await environment_out(session, request, e, await session.get(Application, e.application_id)) for e in rows]

    return await paginate(session, query.order_by(Environment.created_at), request, params, serialize)


@router.get("/environments/{uuid}/", response_model=EnvironmentOut)
async def get_environment(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> EnvironmentOut:
    env, app = await service.get_environment(session, caller, uuid)
    return await environment_out(session, request, env, app)


def variable_out(v: EnvironmentVariable) -> EnvironmentVariableOut:
    return EnvironmentVariableOut(uuid=v.id, environment=v.environment_id, name=v.name,
                                  value=None if v.is_sensitive else v.value, is_sensitive=v.is_sensitive,
                                  created_at=v.created_at)


@router.post("/environment-variables/", response_model=EnvironmentVariableOut, status_code=201)
async def create_variable(body: EnvironmentVariableIn, request: Request, session: SessionDep,
                          caller: CallerDep) -> EnvironmentVariableOut:
    variable = await service.set_variable(session, caller, request.app.state.vault, environment_id=body.environment,
                                          name=body.name, value=body.value, is_sensitive=body.is_sensitive)
    return variable_out(variable)


@router.get("/environment-variables/", response_model=Page[EnvironmentVariableOut])
async def list_variables(request: Request, session: SessionDep, caller: CallerDep,
                         params: Annotated[PageParams, Depends()], environment: UUID | None = None,
                         application: UUID | None = None, name: str | None = None) -> dict:
    query = (select(EnvironmentVariable)
             .join(Environment, Environment.id == EnvironmentVariable.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(Application.organisation_id.in_(caller.organisations)))
    if environment is not None:
        query = query.where(EnvironmentVariable.environment_id == environment)
    if application is not None:
        query = query.where(Environment.application_id == application)
    if name is not None:
        query = query.where(EnvironmentVariable.name == name)

    async def serialize(rows):
        return [variable_out(v) for v in rows]

    return await paginate(session, query.order_by(EnvironmentVariable.name), request, params, serialize)
