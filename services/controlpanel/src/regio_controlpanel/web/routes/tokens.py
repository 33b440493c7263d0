"""The signed-in user's API tokens: create (the secret is shown on the response page only)
and revoke."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep

from ...db.models import ApiToken
from ...domain.errors import NotFound
from ...services import tokens
from ..deps import WebAuditDep, WebCallerDep
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)


async def _page(request: Request, session, web, new_secret: str | None = None, status_code: int = 200):
    listed = (await session.execute(select(ApiToken).where(ApiToken.user_id == web.caller.user.id)
                                    .order_by(ApiToken.created_at.desc()))).scalars().all()
    response = render(request, "tokens.html", web, tokens=listed, new_secret=new_secret, status_code=status_code)
    if new_secret:
        response.headers["Cache-Control"] = "no-store"  # the secret is not kept in the browser's cache either
    return response


@router.get("/tokens")
async def tokens_page(request: Request, session: SessionDep, web: WebCallerDep):
    return await _page(request, session, web)


@router.post("/tokens")
async def create_token(request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                       name: Annotated[str, Form(max_length=200)] = ""):
    created, secret = await tokens.issue(session, web.caller.user, name.strip())
    audit.record(None, "token.create", "token", created.id, f"API token {created.name!r} created", {"name": created.name})
    return await _page(request, session, web, new_secret=secret, status_code=201)


@router.post("/tokens/{uuid}/revoke")
async def revoke_token(uuid: UUID, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    token = await tokens.revoke(session, web.caller.user, uuid)
    if token is None:
        raise NotFound()
    audit.record(None, "token.revoke", "token", token.id, f"API token {token.name!r} revoked", {})
    return RedirectResponse("/web/tokens", status_code=303)
