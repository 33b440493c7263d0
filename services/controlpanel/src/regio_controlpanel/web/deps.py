"""What every web page depends on: the signed-in caller (the same Caller the API builds
from a token, with grants read afresh on every request), the CSRF check on every form
POST, and the audit trail of what a form changes."""
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from regio_common.app import SessionDep

from ..api.deps import UnauditedChange
from ..db.models import WebSession
from ..services.access import Caller, load_grants
from ..services.audit import AuditTrail
from . import sessions

log = logging.getLogger(__name__)


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page (see web/errors.py)."""


class CsrfRefused(Exception):
    """A form POST without the session's CSRF token: refused with 403."""


@dataclass
class WebCaller:
    caller: Caller
    session: WebSession

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


async def session_caller(request: Request, session: SessionDep) -> WebCaller:
    found = await sessions.find(session, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise SignInRequired()
    web_session, user = found
    return WebCaller(Caller(user, await load_grants(session, user.id)), web_session)


WebCallerDep = Annotated[WebCaller, Depends(session_caller)]


async def check_csrf(request: Request, web: WebCallerDep) -> None:
    """Every state-changing form carries the session's token in ``csrf_token``. A page of
    another site cannot read it, so it cannot forge the form (SameSite=Lax is the second line)."""
    sent = (await request.form()).get("csrf_token")
    if not sessions.csrf_matches(web.csrf_token, sent if isinstance(sent, str) else None):
        raise CsrfRefused()


async def audit_trail(request: Request, session: SessionDep, web: WebCallerDep,
                      csrf: Annotated[None, Depends(check_csrf)]) -> AsyncIterator[AuditTrail]:
    """As the API's (api/deps.py): a form that changes state without recording it is refused
    and its transaction rolls back. Depends on the CSRF check, so no change skips it."""
    trail = AuditTrail(session, web.caller, getattr(request.state, "request_id", None))
    yield trail
    if not trail.recorded:
        log.error("%s %s changed state without an audit event", request.method, request.url.path)
        raise UnauditedChange(f"{request.method} {request.url.path} recorded no audit event")


WebAuditDep = Annotated[AuditTrail, Depends(audit_trail, scope="function")]
