from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from sqlalchemy import select

from ...db.models import Application, Domain, Environment
from ...services import domains as service
from ...services import lookups
from ...services.access import Action
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import DomainIn, DomainOut, DomainUpdate

router = Router(prefix="/apps/v3", tags=["domains"])


def domain_out(d: Domain) -> DomainOut:
    return DomainOut(uuid=d.id, environment=d.environment_id, domain=d.domain, kind=d.kind,
                     is_primary=d.kind == service.Kind.PRIMARY, created_at=d.created_at)


@router.post("/domains/", response_model=DomainOut, status_code=201)
async def add_domain(body: DomainIn, request: Request, session: SessionDep, caller: CallerDep,
                     audit: AuditDep) -> DomainOut:
    """The primary and aliases are routed at once to what runs now, and redirect domains answer
    a 301 to the primary; the next release sees all of them in DOMAIN, DOMAIN_ALIASES and
    DOMAIN_REDIRECTS."""
    env, app = await lookups.environment(session, caller, body.environment, Action.OPERATE, field="environment")
    domain = await service.add_domain(session, env, body.domain, service.Kind(body.kind))
    await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.create", "domain", domain.id,
                 f"Domain {domain.domain} added to {app.slug}/{env.slug} as {domain.kind.lower()}",
                 {"domain": domain.domain, "kind": domain.kind})
    return domain_out(domain)


@router.get("/domains/", response_model=Page[DomainOut])
async def list_domains(request: Request, session: SessionDep, caller: CallerDep,
                       params: Annotated[PageParams, Depends()], environment: UUID | None = None,
                       application: UUID | None = None) -> dict:
    query = (select(Domain).join(Environment, Environment.id == Domain.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if environment is not None:
        query = query.where(Domain.environment_id == environment)
    if application is not None:
        query = query.where(Environment.application_id == application)

    async def serialize(rows):
        return [domain_out(d) for d in rows]

    return await paginate(session, query.order_by(Domain.created_at), request, params, serialize)


@router.get("/domains/{uuid}/", response_model=DomainOut)
async def get_domain(uuid: UUID, session: SessionDep, caller: CallerDep) -> DomainOut:
    domain, _, _ = await service.get_domain(session, caller, uuid, Action.VIEW)
    return domain_out(domain)


@router.patch("/domains/{uuid}/", response_model=DomainOut)
async def update_domain(uuid: UUID, body: DomainUpdate, request: Request, session: SessionDep, caller: CallerDep,
                        audit: AuditDep) -> DomainOut:
    """Make a domain the primary (the former primary becomes an alias), an alias or a redirect."""
    domain, env, app = await service.get_domain(session, caller, uuid, Action.OPERATE)
    if body.kind is not None and await service.change_kind(session, domain, service.Kind(body.kind)):
        await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.update", "domain", domain.id,
                 f"Domain {domain.domain} of {app.slug}/{env.slug} is now {domain.kind.lower()}",
                 {"kind": domain.kind})
    return domain_out(domain)


@router.delete("/domains/{uuid}/", status_code=204, response_class=Response)
async def delete_domain(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                        audit: AuditDep) -> Response:
    domain, env, app = await service.get_domain(session, caller, uuid, Action.OPERATE)
    audit.record(app.organisation_id, "domain.delete", "domain", domain.id,
                 f"Domain {domain.domain} removed from {app.slug}/{env.slug}", {"domain": domain.domain})
    await session.delete(domain)
    await session.flush()
    await service.announce(session, request.app.state.runtime.outbox, env, app)
    return Response(status_code=204)
