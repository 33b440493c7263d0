"""Adding a service instance (a database, a bucket) to an environment; the next deployment
provisions and attaches it. Their states are shown on the environment's page."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...services import lookups, service_instances
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)


@router.post("/environments/{uuid}/services")
async def add_service_instance(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                               service: Annotated[UUID, Form()],
                               prefix: Annotated[str, Form(min_length=1, max_length=63)] = "DEFAULT"):
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    instance, offered = await service_instances.add_instance(session, web.caller, env, app, service_id=service,
                                                             region_id=None, prefix=prefix.strip())
    audit.record(app.organisation_id, "service_instance.create", "service_instance", instance.id,
                 f"Added {offered.name} as {instance.prefix} to {app.slug} {env.slug}",
                 {"environment": env.id, "service": offered.id, "prefix": instance.prefix})
    return RedirectResponse(f"/web/environments/{env.id}#services", status_code=303)
