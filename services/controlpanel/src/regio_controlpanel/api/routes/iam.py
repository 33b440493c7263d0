from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request, Response
from sqlalchemy import select

from ...db.models import AuditEvent, Membership, Organisation, User
from ...domain.errors import NotFound
from ...services import audit as audit_service
from ...services import members as service
from ...services.access import Action, Caller, Grant, Role
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import (
    AuditEventOut,
    Me,
    MembershipIn,
    MembershipOut,
    MembershipUpdate,
    OrganisationIn,
    OrganisationOut,
    OrganisationUpdate,
    Scopes,
)

router = Router(prefix="/iam/v3", tags=["iam"])


def organisation_out(org: Organisation, caller: Caller) -> OrganisationOut:
    grant = caller.grants.get(org.id)
    return OrganisationOut(uuid=org.id, name=org.name, created_at=org.created_at, role=grant.role if grant else None)


@router.get("/me/", response_model=Me)
async def me(caller: CallerDep) -> Me:
    u = caller.user
    return Me(uuid=u.id, email=u.email, first_name=u.first_name, last_name=u.last_name)


@router.get("/organisations/", response_model=Page[OrganisationOut])
async def organisations(request: Request, session: SessionDep, caller: CallerDep,
                        params: Annotated[PageParams, Depends()], name: str | None = None) -> dict:
    query = select(Organisation).where(Organisation.id.in_(caller.organisations))
    if name is not None:
        query = query.where(Organisation.name == name)

    async def serialize(rows):
        return [organisation_out(o, caller) for o in rows]

    return await paginate(session, query.order_by(Organisation.created_at.desc()), request, params, serialize)


@router.post("/organisations/", response_model=OrganisationOut, status_code=201)
async def create_organisation(body: OrganisationIn, session: SessionDep, caller: CallerDep,
                              audit: AuditDep) -> OrganisationOut:
    org = await service.create_organisation(session, caller, body.name)
    caller.grants[org.id] = Grant(Role.OWNER)
    audit.record(org.id, "organisation.create", "organisation", org.id, f"Organisation {org.name} created",
                 {"name": org.name})
    return organisation_out(org, caller)


@router.get("/organisations/{uuid}/", response_model=OrganisationOut)
async def organisation(uuid: UUID, session: SessionDep, caller: CallerDep) -> OrganisationOut:
    org = await session.get(Organisation, uuid) if caller.can_see(uuid) else None
    if org is None:
        raise NotFound()
    return organisation_out(org, caller)


@router.patch("/organisations/{uuid}/", response_model=OrganisationOut)
async def update_organisation(uuid: UUID, body: OrganisationUpdate, session: SessionDep, caller: CallerDep,
                              audit: AuditDep) -> OrganisationOut:
    org = await session.get(Organisation, uuid) if caller.can_see(uuid) else None
    if org is None:
        raise NotFound()
    caller.require_organisation(uuid, Action.ADMINISTER)
    audit.record(org.id, "organisation.update", "organisation", org.id, f"Organisation {org.name} changed",
                 body.sent())
    if body.name is not None:
        org.name = body.name
    return organisation_out(org, caller)


# --- members -------------------------------------------------------------------------


async def memberships_out(session, rows: list[Membership]) -> list[MembershipOut]:
    emails = dict((await session.execute(select(User.id, User.email).where(
        User.id.in_({m.user_id for m in rows})))).all())
    scopes = await service.scopes_of(session, [m.id for m in rows])
    return [MembershipOut(uuid=m.id, organisation=m.organisation_id, user=m.user_id, email=emails[m.user_id],
                          role=m.role, scopes=Scopes(applications=scopes[m.id][0], environments=scopes[m.id][1]),
                          created_at=m.created_at) for m in rows]


@router.get("/memberships/", response_model=Page[MembershipOut])
async def list_memberships(request: Request, session: SessionDep, caller: CallerDep,
                           params: Annotated[PageParams, Depends()], organisation: UUID | None = None) -> dict:
    """Members see who else is in their organisations."""
    query = select(Membership).where(Membership.organisation_id.in_(caller.organisations))
    if organisation is not None:
        query = query.where(Membership.organisation_id == organisation)

    async def serialize(rows):
        return await memberships_out(session, list(rows))

    return await paginate(session, query.order_by(Membership.created_at), request, params, serialize)


@router.post("/memberships/", response_model=MembershipOut, status_code=201)
async def add_member(body: MembershipIn, session: SessionDep, caller: CallerDep, audit: AuditDep) -> MembershipOut:
    membership, user = await service.add_member(session, caller, body.organisation, body.email, Role(body.role),
                                                body.scopes.applications, body.scopes.environments)
    audit.record(membership.organisation_id, "membership.create", "membership", membership.id,
                 f"{user.email} added as {membership.role}",
                 {"email": user.email, "role": membership.role, **body.scopes.model_dump(mode="json")})
    return (await memberships_out(session, [membership]))[0]


@router.get("/memberships/{uuid}/", response_model=MembershipOut)
async def get_membership(uuid: UUID, session: SessionDep, caller: CallerDep) -> MembershipOut:
    return (await memberships_out(session, [await service.get_membership(session, caller, uuid)]))[0]


@router.patch("/memberships/{uuid}/", response_model=MembershipOut)
async def update_membership(uuid: UUID, body: MembershipUpdate, session: SessionDep, caller: CallerDep,
                            audit: AuditDep) -> MembershipOut:
    membership = await service.get_membership(session, caller, uuid)
    scopes = (body.scopes.applications, body.scopes.environments) if body.scopes is not None else None
    await service.update_member(session, caller, membership, Role(body.role) if body.role else None, scopes)
    out = (await memberships_out(session, [membership]))[0]
    audit.record(membership.organisation_id, "membership.update", "membership", membership.id,
                 f"Membership of {out.email} changed", body.model_dump(mode="json", exclude_unset=True))
    return out


@router.delete("/memberships/{uuid}/", status_code=204, response_class=Response)
async def remove_member(uuid: UUID, session: SessionDep, caller: CallerDep, audit: AuditDep) -> Response:
    membership = await service.get_membership(session, caller, uuid)
    out = (await memberships_out(session, [membership]))[0]
    await service.remove_member(session, caller, membership)
    audit.record(membership.organisation_id, "membership.delete", "membership", membership.id,
                 f"{out.email} removed", {"email": out.email, "role": out.role})
    return Response(status_code=204)


# --- audit trail ---------------------------------------------------------------------


@router.get("/audit-events/", response_model=Page[AuditEventOut])
async def audit_events(request: Request, session: SessionDep, caller: CallerDep,
                       params: Annotated[PageParams, Depends()], organisation: UUID | None = None,
                       target: Annotated[UUID | None, Query(description="Events about this object.")] = None,
                       action: str | None = None) -> dict:
    """Every change in the organisations the caller administers, newest first."""
    query = audit_service.events_query(caller, organisation)
    if target is not None:
        query = query.where(AuditEvent.target_id == target)
    if action is not None:
        query = query.where(AuditEvent.action == action)

    async def serialize(rows):
        return [AuditEventOut(id=e.id, organisation=e.organisation_id, actor=e.actor_id, actor_email=e.actor_email,
                              action=e.action, target_type=e.target_type, target=e.target_id, summary=e.summary,
                              changes=e.changes, request_id=e.request_id, created_at=e.created_at) for e in rows]

    return await paginate(session, query, request, params, serialize)
