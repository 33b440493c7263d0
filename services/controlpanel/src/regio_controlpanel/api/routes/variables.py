from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from sqlalchemy import select

from ...db.models import Application, Environment, EnvironmentVariable
from ...services import lookups
from ...services import variables as service
from ...services.access import Action
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import EnvironmentVariableIn, EnvironmentVariableOut, EnvironmentVariableUpdate

router = Router(prefix="/apps/v3", tags=["environment variables"])


def variable_out(v: EnvironmentVariable) -> EnvironmentVariableOut:
    return EnvironmentVariableOut(uuid=v.id, environment=v.environment_id, name=v.name,
                                  value=None if v.is_sensitive else v.value, is_sensitive=v.is_sensitive,
                                  created_at=v.created_at)


def _audited_value(v: EnvironmentVariable) -> dict:
    # The audit trail shows plain values; a sensitive one only that it was set.
    return {"name": v.name, "is_sensitive": v.is_sensitive, "value": "(sensitive)" if v.is_sensitive else v.value}


@router.post("/environment-variables/", response_model=EnvironmentVariableOut, status_code=201)
async def create_variable(body: EnvironmentVariableIn, request: Request, session: SessionDep,
                          caller: CallerDep, audit: AuditDep) -> EnvironmentVariableOut:
    env, app = await lookups.environment(session, caller, body.environment, Action.OPERATE, field="environment")
    variable = await service.create_variable(session, request.app.state.vault, env.id, name=body.name,
                                             value=body.value, is_sensitive=body.is_sensitive)
    audit.record(app.organisation_id, "environment_variable.create", "environment_variable", variable.id,
                 f"Variable {variable.name} set on {app.slug}/{env.slug}", _audited_value(variable))
    return variable_out(variable)


@router.get("/environment-variables/", response_model=Page[EnvironmentVariableOut])
async def list_variables(request: Request, session: SessionDep, caller: CallerDep,
                         params: Annotated[PageParams, Depends()], environment: UUID | None = None,
                         application: UUID | None = None, name: str | None = None) -> dict:
    query = (select(EnvironmentVariable)
             .join(Environment, Environment.id == EnvironmentVariable.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if environment is not None:
        query = query.where(EnvironmentVariable.environment_id == environment)
    if application is not None:
        query = query.where(Environment.application_id == application)
    if name is not None:
        query = query.where(EnvironmentVariable.name == name)

    async def serialize(rows):
        return [variable_out(v) for v in rows]

    return await paginate(session, query.order_by(EnvironmentVariable.name), request, params, serialize)


@router.get("/environment-variables/{uuid}/", response_model=EnvironmentVariableOut)
async def get_variable(uuid: UUID, session: SessionDep, caller: CallerDep) -> EnvironmentVariableOut:
    variable, _, _ = await service.get_variable(session, caller, uuid, Action.VIEW)
    return variable_out(variable)


@router.patch("/environment-variables/{uuid}/", response_model=EnvironmentVariableOut)
async def update_variable(uuid: UUID, body: EnvironmentVariableUpdate, request: Request, session: SessionDep,
                          caller: CallerDep, audit: AuditDep) -> EnvironmentVariableOut:
    """A new value or sensitivity; the next deployment's release carries it."""
    variable, env, app = await service.get_variable(session, caller, uuid, Action.OPERATE)
    await service.update_variable(session, request.app.state.vault, variable, body.value, body.is_sensitive)
    audit.record(app.organisation_id, "environment_variable.update", "environment_variable", variable.id,
                 f"Variable {variable.name} changed on {app.slug}/{env.slug}", _audited_value(variable))
    await session.flush()
    return variable_out(variable)


@router.delete("/environment-variables/{uuid}/", status_code=204, response_class=Response)
async def delete_variable(uuid: UUID, session: SessionDep, caller: CallerDep, audit: AuditDep) -> Response:
    variable, env, app = await service.get_variable(session, caller, uuid, Action.OPERATE)
    audit.record(app.organisation_id, "environment_variable.delete", "environment_variable", variable.id,
                 f"Variable {variable.name} removed from {app.slug}/{env.slug}", {"name": variable.name})
    await session.delete(variable)
    return Response(status_code=204)
