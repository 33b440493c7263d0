"""The web Control Panel: server-rendered pages (Jinja2) over the same service layer as the
API, for people signed in with email and password. ``mount(app)`` adds it to the app.

Every page builds the same ``Caller`` the API builds from a token, from the browser's
session instead, and asks the same service functions, so it sees and may change exactly
what that user's API token would. Forms are POSTs carrying the session's CSRF token, and
every one that changes state records its audit event (tests/test_route_guards.py). Every page
is sent with a Content-Security-Policy that allows no inline script (security_headers.py)."""
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..db.models import WebSession
from . import deps, errors
from .routes import (
    account,
    applications,
    auth,
    backups,
    billing,
    deployments,
    domains,
    environments,
    logs,
    migrations,
    organisations,
    plans,
    services,
    tokens,
    variables,
)
from .security_headers import SecurityHeaders

STATIC = Path(__file__).parent / "static"
STATIC_PATH = "/web/static"
ROUTERS = tuple(m.router for m in (
    auth, account, applications, deployments, environments, variables, domains, services, backups, logs, tokens,
    organisations, migrations, plans, billing))

__all__ = ["ROUTERS", "STATIC_PATH", "WebSession", "deps", "mount"]


def mount(app: FastAPI) -> None:
    """Call after the API's error handlers are installed: the web's wrap them for /web paths."""
    errors.install(app)
    app.add_middleware(SecurityHeaders)
    for router in ROUTERS:
        app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="web-static")
