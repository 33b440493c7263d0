"""The caller's own API tokens: create (shown once), list, revoke."""
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import select

from ...db.models import ApiToken
from ...domain.errors import NotFound
from ...services import tokens
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import NewToken, TokenIn, TokenOut

router = Router(prefix="/iam/v3", tags=["iam"])


def token_out(t: ApiToken) -> TokenOut:
    return TokenOut(uuid=t.id, name=t.name, created_at=t.created_at, last_used_at=t.last_used_at,
                    revoked_at=t.revoked_at)


@router.post("/tokens/", response_model=NewToken, status_code=201)
async def create_token(body: TokenIn, session: SessionDep, caller: CallerDep, audit: AuditDep) -> NewToken:
    created, secret = await tokens.issue(session, caller.user, body.name)
    # A token is the user's, not an organisation's: its events carry no organisation.
    audit.record(None, "token.create", "token", created.id, f"API token {created.name!r} created", {"name": created.name})
    return NewToken(**token_out(created).model_dump(), token=secret)


@router.get("/tokens/", response_model=Page[TokenOut])
async def list_tokens(request: Request, session: SessionDep, caller: CallerDep,
                      params: Annotated[PageParams, Depends()]) -> dict:
    query = select(ApiToken).where(ApiToken.user_id == caller.user.id).order_by(ApiToken.created_at.desc())

    async def serialize(rows):
        return [token_out(t) for t in rows]

    return await paginate(session, query, request, params, serialize)


@router.delete("/tokens/{uuid}/", response_model=TokenOut)
async def revoke_token(uuid: UUID, session: SessionDep, caller: CallerDep, audit: AuditDep) -> TokenOut:
    token = await tokens.revoke(session, caller.user, uuid)
    if token is None:
        raise NotFound()
    audit.record(None, "token.revoke", "token", token.id, f"API token {token.name!r} revoked", {})
    return token_out(token)
