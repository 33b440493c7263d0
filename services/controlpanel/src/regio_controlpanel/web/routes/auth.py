"""Signing in with email and password, and signing out."""
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...services.access import Caller
from ...services.audit import AuditTrail
from .. import sessions, throttle
from ..deps import WebAuditDep, WebCallerDep
from ..templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only back into the web pages of this host, never to another site."""
    if target and target.startswith("/web") and not target.startswith("//"):
        return target
    return "/web/"


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/web/", status_code=303)


def _login_page(request: Request, next_: str, error: str | None = None, email: str = "", status_code: int = 200):
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status_code=status_code, login_csrf=token, next=_safe_next(next_),
                      error=error, email=email)
    sessions.set_cookie(request, response, sessions.LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/web/login")
async def login_page(request: Request, session: SessionDep, next: str | None = None):
    if await sessions.find(session, request.cookies.get(sessions.COOKIE)) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next or "/web/")


@router.post("/web/login")
async def sign_in(request: Request, session: SessionDep, email: Annotated[str, Form(max_length=254)],
                  password: Annotated[str, Form(max_length=1024)], csrf_token: Annotated[str, Form()] = "",
                  next: Annotated[str, Form()] = "/web/"):
    """Has no caller yet, so it records its audit event itself (see test_route_guards)."""
    if not sessions.csrf_matches(request.cookies.get(sessions.LOGIN_CSRF_COOKIE, ""), csrf_token):
        return _login_page(request, next, "The sign-in form expired; please try again.", email, 403)
    wait = await throttle.count_guess(request.app.state.runtime.sessions, email)
    if wait is not None:
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        return _login_page(request, next, f"Too many failed sign-ins with this email; try again in {minutes} "
                           f"minute{'s' if minutes > 1 else ''}.", email, 429)
    user = await sessions.authenticate(session, email, password)
    if user is None:  # already counted
        return _login_page(request, next, "Wrong email or password.", email, 400)
    await throttle.forget_failures(session, email)
    web_session, cookie = await sessions.start(session, user)
    AuditTrail(session, Caller(user, {}), getattr(request.state, "request_id", None)).record(
        None, "session.create", "web_session", web_session.id, f"{user.email} signed in to the web Control Panel")
    response = RedirectResponse(_safe_next(next), status_code=303)
    sessions.set_cookie(request, response, sessions.COOKIE, cookie, max_age=int(sessions.LIFETIME.total_seconds()))
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/web/logout")
async def sign_out(request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    audit.record(None, "session.end", "web_session", web.session.id, f"{web.caller.user.email} signed out")
    await sessions.end(session, web.session)
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="lax", secure=sessions.is_https(request))
    return response
