"""Service credentials on internal HTTP APIs: other services present the region's
service token; with no token configured nobody is let in, rather than everybody."""
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

SERVICE_TOKEN_HEADER = "X-Regio-Service-Token"


def require_service_token(request: Request,
                          token: Annotated[str | None, Header(alias=SERVICE_TOKEN_HEADER)] = None) -> None:
    expected = request.app.state.settings.service_token
    if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"a valid {SERVICE_TOKEN_HEADER} is required")


ServiceAuth = Depends(require_service_token)
