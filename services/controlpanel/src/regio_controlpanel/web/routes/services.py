"""Service instances (a database, a bucket) of an environment: adding one (the next
deployment provisions and attaches it), detaching it (its data is kept), attaching it again,
and removing it with its data. Their states are shown on the environment's page."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...services import lookups, service_instances
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)


def _back(environment_id: UUID) -> RedirectResponse:
    return RedirectResponse(f"/web/environments/{environment_id}#services", status_code=303)


@router.post("/environments/{uuid}/services")
async def add_service_instance(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                               service: Annotated[UUID, Form()],
                               prefix: Annotated[str, Form(min_length=1, max_length=63)] = "DEFAULT"):
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    instance, offered = await service_instances.add_instance(session, web.caller, env, app, service_id=service,
                                                             region_id=None, prefix=prefix.strip())
    service_instances.record_change(audit, "create", instance, offered, env, app)
    return _back(env.id)


@router.post("/service-instances/{uuid}/detach")
async def detach_service_instance(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    """As POST /apps/v3/service-instances/{uuid}/detach/: releases are no longer told of it."""
    _, _, env, _ = await service_instances.change_attachment(session, web.caller, audit, uuid, "detach")
    return _back(env.id)


@router.post("/service-instances/{uuid}/attach")
async def attach_service_instance(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    _, _, env, _ = await service_instances.change_attachment(session, web.caller, audit, uuid, "attach")
    return _back(env.id)


@router.post("/service-instances/{uuid}/delete")
async def remove_service_instance(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep,
                                  audit: WebAuditDep):
    """As DELETE /apps/v3/service-instances/{uuid}/: a NEW one, or a DETACHED one with its data."""
    instance, offered, env, app = await service_instances.get_instance(session, web.caller, uuid, Action.OPERATE)
    await service_instances.remove_instance(session, request.app.state.vault, instance, offered)
    service_instances.record_change(audit, "delete", instance, offered, env, app)
    return _back(env.id)
