"""Request dependencies: the request's transaction, the caller, and the audit trail of
what the request changes."""
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from regio_common.app import SessionDep

from ..domain.errors import NotAuthenticated
from ..services import tokens
from ..services.access import Caller
from ..services.audit import AuditTrail
from ..services.clock import Clock

log = logging.getLogger(__name__)


async def get_caller(request: Request, session: SessionDep) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise NotAuthenticated("Authentication credentials were not provided.")
    found = await tokens.authenticate(session, token.strip())
    if found is None:
        raise NotAuthenticated("Invalid token.")
    user, grants = found
    return Caller(user, grants)


CallerDep = Annotated[Caller, Depends(get_caller)]


class UnauditedChange(RuntimeError):
    """A mutating route returned without recording what it changed: a defect."""


async def audit_trail(request: Request, session: SessionDep, caller: CallerDep) -> AsyncIterator[AuditTrail]:
    """Every mutating route takes this. When the handler succeeds without recording an event,
    the change is refused (its transaction rolls back): nothing changes unaudited."""
    trail = AuditTrail(session, caller, getattr(request.state, "request_id", None))
    yield trail
    if not trail.recorded:
        log.error("%s %s changed state without an audit event", request.method, request.url.path)
        raise UnauditedChange(f"{request.method} {request.url.path} recorded no audit event")


AuditDep = Annotated[AuditTrail, Depends(audit_trail, scope="function")]


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


ClockDep = Annotated[Clock, Depends(get_clock)]
