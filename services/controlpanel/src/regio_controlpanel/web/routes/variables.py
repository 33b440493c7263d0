"""Environment variables: add, change, delete. A sensitive value is encrypted at rest and
never sent back to the browser, not even into an edit form."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...api.routes.variables import _audited_value
from ...services import lookups
from ...services import variables as service
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)
VALUE = Form(max_length=64 * 1024)


def _back(environment_id: UUID) -> RedirectResponse:
    return RedirectResponse(f"/web/environments/{environment_id}#variables", status_code=303)


@router.post("/environments/{uuid}/variables")
async def add_variable(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                       name: Annotated[str, Form(min_length=1, max_length=255)], value: Annotated[str, VALUE] = "",
                       is_sensitive: Annotated[bool, Form()] = False):
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    variable = await service.create_variable(session, request.app.state.vault, env.id, name=name.strip(),
                                             value=value, is_sensitive=is_sensitive)
    audit.record(app.organisation_id, "environment_variable.create", "environment_variable", variable.id,
                 f"Variable {variable.name} set on {app.slug}/{env.slug}", _audited_value(variable))
    return _back(env.id)


@router.post("/variables/{uuid}")
async def change_variable(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                          value: Annotated[str, VALUE] = "", is_sensitive: Annotated[bool, Form()] = False):
    """A sensitive variable's form is blank: left blank, its value stays as it is."""
    variable, env, app = await service.get_variable(session, web.caller, uuid, Action.OPERATE)
    keep = variable.is_sensitive and value == ""
    await service.update_variable(session, request.app.state.vault, variable, None if keep else value,
                                  True if variable.is_sensitive else is_sensitive)
    audit.record(app.organisation_id, "environment_variable.update", "environment_variable", variable.id,
                 f"Variable {variable.name} changed on {app.slug}/{env.slug}", _audited_value(variable))
    await session.flush()
    return _back(env.id)


@router.post("/variables/{uuid}/delete")
async def delete_variable(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    variable, env, app = await service.get_variable(session, web.caller, uuid, Action.OPERATE)
    audit.record(app.organisation_id, "environment_variable.delete", "environment_variable", variable.id,
                 f"Variable {variable.name} removed from {app.slug}/{env.slug}", {"name": variable.name})
    await session.delete(variable)
    await session.flush()
    return _back(env.id)
