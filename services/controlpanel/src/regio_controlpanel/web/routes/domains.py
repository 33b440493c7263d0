"""An environment's custom domains: add (primary, alias or redirect), verify and remove; the
ingress follows at once for verified ones."""
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...services import domains as service
from ...services import lookups
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)


@router.post("/environments/{uuid}/domains")
async def add_domain(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                     domain: Annotated[str, Form(min_length=1, max_length=253)],
                     kind: Annotated[Literal["PRIMARY", "ALIAS", "REDIRECT"], Form()] = "ALIAS"):
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    added = await service.add_domain(session, request.app.state.vault, env, app, domain, service.Kind(kind))
    if service.is_routed(added):
        await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.create", "domain", added.id,
                 f"Domain {added.domain} added to {app.slug}/{env.slug} as {added.kind.lower()}",
                 {"domain": added.domain, "kind": added.kind, "verification": added.verification_status})
    return RedirectResponse(f"/web/environments/{env.id}#domains", status_code=303)


@router.post("/domains/{uuid}/verify")
async def verify_domain(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    domain, env, app = await service.get_domain(session, web.caller, uuid, Action.OPERATE)
    if await service.verify(session, request.app.state.vault, domain, env, app):
        await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.verify", "domain", domain.id,
                 f"Domain {domain.domain} of {app.slug}/{env.slug} checked: {domain.verification_status}",
                 {"verification": domain.verification_status})
    return RedirectResponse(f"/web/environments/{env.id}#domains", status_code=303)


@router.post("/domains/{uuid}/delete")
async def delete_domain(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    domain, env, app = await service.get_domain(session, web.caller, uuid, Action.OPERATE)
    audit.record(app.organisation_id, "domain.delete", "domain", domain.id,
                 f"Domain {domain.domain} removed from {app.slug}/{env.slug}", {"domain": domain.domain})
    await service.remove_domain(session, request.app.state.runtime.outbox, domain, env, app)
    return RedirectResponse(f"/web/environments/{env.id}#domains", status_code=303)
