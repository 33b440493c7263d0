"""Request dependencies: the service credential and a database session."""
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

SERVICE_TOKEN_HEADER = "X-Regio-Service-Token"


def require_service_token(
    request: Request, token: Annotated[str | None, Header(alias=SERVICE_TOKEN_HEADER)] = None
) -> None:
    expected = request.app.state.controller.settings.service_token
    # No configured token means no caller is trusted, not that every caller is.
    if not expected or token is None or not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid service token is required")


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.controller.runtime.sessions() as s:
        yield s


ServiceCaller = Depends(require_service_token)
SessionDep = Annotated[AsyncSession, Depends(session)]
