from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import select

from ...db.models import Organisation
from ...domain.errors import NotFound
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import Me, OrganisationOut

router = Router(prefix="/iam/v3", tags=["iam"])


def organisation_out(org: Organisation) -> OrganisationOut:
    return OrganisationOut(uuid=org.id, name=org.name, created_at=org.created_at)


@router.get("/me/", response_model=Me)
async def me(caller: CallerDep) -> Me:
    u = caller.user
    return Me(uuid=u.id, email=u.email, first_name=u.first_name, last_name=u.last_name)


@router.get("/organisations/", response_model=Page[OrganisationOut])
async def organisations(request: Request, session: SessionDep, caller: CallerDep,
                        params: Annotated[PageParams, Depends()]) -> dict:
    query = select(Organisation).where(Organisation.id.in_(caller.organisations)).order_by(Organisation.created_at.desc())

    async def serialize(rows):
        return [organisation_out(o) for o in rows]

    return await paginate(session, query, request, params, serialize)


@router.get("/organisations/{uuid}/", response_model=OrganisationOut)
async def organisation(uuid: UUID, session: SessionDep, caller: CallerDep) -> OrganisationOut:
    org = await session.get(Organisation, uuid) if caller.can_see(uuid) else None
    if org is None:
        raise NotFound()
    return organisation_out(org)
