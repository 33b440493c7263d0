"""What routes take from the running service."""
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from ..agent import Agent
from ..settings import Settings


def get_agent(request: Request) -> Agent:
    return request.app.state.agent


def require_service_token(
    request: Request,
    token: Annotated[str | None, Header(alias="X-Regio-Service-Token")] = None,
) -> None:
    """Internal APIs answer only other services. With no token configured nobody gets in."""
    settings: Settings = request.app.state.settings
    expected = settings.service_token
    if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid X-Regio-Service-Token is required")


AgentDep = Annotated[Agent, Depends(get_agent)]
ServiceAuth = Depends(require_service_token)
