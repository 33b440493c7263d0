from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from sqlalchemy import select

from ...db.models import Application, Domain, Environment
from ...services import domain_verification, lookups
from ...services import domains as service
from ...services.access import Action
from ...services.crypto import Vault
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import DomainIn, DomainOut, DomainUpdate, DomainVerificationOut

router = Router(prefix="/apps/v3", tags=["domains"])


def domain_out(d: Domain, organisation_id: UUID, vault: Vault) -> DomainOut:
    verification = DomainVerificationOut(
        status=d.verification_status, record_name=domain_verification.record_name(d.domain),
        record_value=vault.domain_challenge(organisation_id, d.domain), last_error=d.verification_error,
        checked_at=d.verification_checked_at, verified_at=d.verified_at)
    return DomainOut(uuid=d.id, environment=d.environment_id, domain=d.domain, kind=d.kind,
                     # A primary still waiting for verification is not (yet) the one served.
                     is_primary=d.kind == service.Kind.PRIMARY and service.is_routed(d), verification=verification,
                     created_at=d.created_at)


@router.post("/domains/", response_model=DomainOut, status_code=201)
async def add_domain(body: DomainIn, request: Request, session: SessionDep, caller: CallerDep,
                     audit: AuditDep) -> DomainOut:
    """Once verified (its `verification` TXT record found, now or by `verify`), the primary and
    aliases are routed to what runs now, and redirect domains answer a 301 to the primary; the
    next release sees all verified ones in DOMAIN, DOMAIN_ALIASES and DOMAIN_REDIRECTS."""
    env, app = await lookups.environment(session, caller, body.environment, Action.OPERATE, field="environment")
    vault = request.app.state.vault
    domain = await service.add_domain(session, vault, env, app, body.domain, service.Kind(body.kind))
    if service.is_routed(domain):
        await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.create", "domain", domain.id,
                 f"Domain {domain.domain} added to {app.slug}/{env.slug} as {domain.kind.lower()}",
                 {"domain": domain.domain, "kind": domain.kind, "verification": domain.verification_status})
    return domain_out(domain, app.organisation_id, vault)


@router.post("/domains/{uuid}/verify/", response_model=DomainOut)
async def verify_domain(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                        audit: AuditDep) -> DomainOut:
    """Looks the domain's TXT record up again (through the region's resolver, a few seconds at
    most); a domain found verified is routed at once."""
    domain, env, app = await service.get_domain(session, caller, uuid, Action.OPERATE)
    vault = request.app.state.vault
    if await service.verify(session, vault, domain, env, app):
        await service.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "domain.verify", "domain", domain.id,
                 f"Domain {domain.domain} of {app.slug}/{env.slug} checked: {domain.verification_status}",
                 {"verification": domain.verification_status})
    return domain_out(domain, app.organisation_id, vault)


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
        organisations = dict((await session.execute(
            select(Environment.id, Application.organisation_id).join(Application)
            .where(Environment.id.in_({d.environment_id for d in rows})))).all())
        return [domain_out(d, organisations[d.environment_id], request.app.state.vault) for d in rows]

    return await paginate(session, query.order_by(Domain.created_at), request, params, serialize)


@router.get("/domains/{uuid}/", response_model=DomainOut)
async def get_domain(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> DomainOut:
    domain, _, app = await service.get_domain(session, caller, uuid, Action.VIEW)
    return domain_out(domain, app.organisation_id, request.app.state.vault)


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
    return domain_out(domain, app.organisation_id, request.app.state.vault)


@router.delete("/domains/{uuid}/", status_code=204, response_class=Response)
async def delete_domain(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                        audit: AuditDep) -> Response:
    domain, env, app = await service.get_domain(session, caller, uuid, Action.OPERATE)
    audit.record(app.organisation_id, "domain.delete", "domain", domain.id,
                 f"Domain {domain.domain} removed from {app.slug}/{env.slug}", {"domain": domain.domain})
    await service.remove_domain(session, request.app.state.runtime.outbox, domain, env, app)
    return Response(status_code=204)
