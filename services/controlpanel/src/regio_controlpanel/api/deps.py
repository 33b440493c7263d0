"""Request dependencies: the request's transaction, the caller, and the caller's organisations."""
from typing import Annotated

from fastapi import Depends, Request

from regio_common.app import SessionDep

from ..domain.errors import NotAuthenticated
from ..services import tokens
from ..services.access import Caller


async def get_caller(request: Request, session: SessionDep) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise NotAuthenticated("Authentication credentials were not provided.")
    found = await tokens.authenticate(session, token.strip())
    if found is None:
        raise NotAuthenticated("Invalid token.")
    user, organisations = found
    return Caller(user, organisations)


CallerDep = Annotated[Caller, Depends(get_caller)]
