"""What internal routes depend on: a database session, and the service credential."""
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

TOKEN_HEADER = "X-Regio-Service-Token"


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request."""
    async with request.app.state.runtime.sessions() as s, s.begin():
        yield s


SessionDep = Annotated[AsyncSession, Depends(session)]


async def require_service_token(
    request: Request, token: Annotated[str | None, Header(alias=TOKEN_HEADER)] = None
) -> None:
    expected = request.app.state.settings.service_token
    # With no credential configured nothing is let in, rather than everything.
    if not expected or not token or not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="service credential required")


ServiceAuth = Depends(require_service_token)
