"""What routes receive: a database session in one transaction, and the caller checked as a service."""
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]


async def require_service(request: Request,
                          x_regio_service_token: Annotated[str | None, Header()] = None) -> None:
    """Internal APIs answer other services only; with no token configured they answer no one."""
    expected = request.app.state.settings.service_token
    if not expected or not x_regio_service_token or not secrets.compare_digest(
            x_regio_service_token.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="a service token is required")


ServiceDep = Depends(require_service)
