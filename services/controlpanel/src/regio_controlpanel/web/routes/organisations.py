"""Organisations the user belongs to, their members and roles; creating one, adding a member,
changing a member's role and removing one (with the API's rules: see services/members.py)."""
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep

from ...api.routes.iam import memberships_out
from ...db.models import Membership, Organisation
from ...domain.errors import NotFound
from ...services import audit
from ...services import members as service
from ...services.access import Action, Grant, Role
from ..deps import WebAuditDep, WebCallerDep
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)
RECENT_EVENTS = 50  # of the audit trail, on the organisation's page; the API pages through all
ROLE = Annotated[Literal["owner", "admin", "member", "billing"], Form()]


@router.get("/organisations")
async def organisations_page(request: Request, session: SessionDep, web: WebCallerDep):
    orgs = (await session.execute(select(Organisation).where(Organisation.id.in_(web.caller.organisations))
                                  .order_by(Organisation.name))).scalars().all()
    return render(request, "organisations.html", web, organisations=orgs, grants=web.caller.grants)


@router.post("/organisations")
async def create_organisation(session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                              name: Annotated[str, Form(min_length=1, max_length=200)]):
    org = await service.create_organisation(session, web.caller, name.strip())
    web.caller.grants[org.id] = Grant(Role.OWNER)
    audit.record(org.id, "organisation.create", "organisation", org.id, f"Organisation {org.name} created",
                 {"name": org.name})
    return RedirectResponse(f"/web/organisations/{org.id}", status_code=303)


@router.get("/organisations/{uuid}")
async def organisation_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    org = await session.get(Organisation, uuid) if web.caller.can_see(uuid) else None
    if org is None:
        raise NotFound()
    rows = (await session.execute(select(Membership).where(Membership.organisation_id == uuid)
                                  .order_by(Membership.created_at))).scalars().all()
    grant = web.caller.grants[uuid]
    may_administer = grant.allows(Action.ADMINISTER) and not grant.scoped
    events = (await session.execute(audit.events_query(web.caller, uuid).limit(RECENT_EVENTS))).scalars().all() \
        if may_administer else []
    return render(request, "organisation.html", web, org=org, members=await memberships_out(session, list(rows)),
                  role=grant.role, may_administer=may_administer, roles=[r.value for r in Role], events=events,
                  may_bill=grant.allows(Action.BILLING) and not grant.scoped)


@router.post("/organisations/{uuid}/members")
async def add_member(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                     email: Annotated[str, Form(min_length=3, max_length=254)],
                     role: ROLE = "member"):
    """A whole-organisation membership; narrowing it to some applications is the API's for now."""
    if not web.caller.can_see(uuid):
        raise NotFound()  # in the path here, not in a body as in the API: a 404 like every page's object
    membership, user = await service.add_member(session, web.caller, uuid, email, Role(role), [], [])
    audit.record(membership.organisation_id, "membership.create", "membership", membership.id,
                 f"{user.email} added as {membership.role}",
                 {"email": user.email, "role": membership.role, "applications": [], "environments": []})
    return RedirectResponse(f"/web/organisations/{uuid}", status_code=303)


@router.post("/memberships/{uuid}")
async def change_role(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep, role: ROLE):
    """As PATCH /iam/v3/memberships/{uuid}/ with only a role: its scopes stay as they are."""
    membership = await service.get_membership(session, web.caller, uuid)
    await service.update_member(session, web.caller, membership, Role(role), None)
    out = (await memberships_out(session, [membership]))[0]
    audit.record(membership.organisation_id, "membership.update", "membership", membership.id,
                 f"Membership of {out.email} changed", {"role": role})
    return RedirectResponse(f"/web/organisations/{membership.organisation_id}", status_code=303)


@router.post("/memberships/{uuid}/delete")
async def remove_member(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    """As DELETE /iam/v3/memberships/{uuid}/: anyone may leave; admins remove others."""
    membership = await service.get_membership(session, web.caller, uuid)
    out = (await memberships_out(session, [membership]))[0]
    await service.remove_member(session, web.caller, membership)
    audit.record(membership.organisation_id, "membership.delete", "membership", membership.id,
                 f"{out.email} removed", {"email": out.email, "role": out.role})
    if membership.user_id == web.caller.user.id:  # left: the organisation is no longer theirs to see
        return RedirectResponse("/web/organisations", status_code=303)
    return RedirectResponse(f"/web/organisations/{membership.organisation_id}", status_code=303)
