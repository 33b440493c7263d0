"""Guards checked by walking the app's routes, so a new route cannot forget them:
every public route identifies its caller, and every route that changes state records
who changed what on the audit trail. The few routes open to anyone (backup download links)
are told apart by their router, and may only read what their secret token names."""
from fastapi.routing import APIRoute

from regio_controlpanel import web
from regio_controlpanel.api.deps import audit_trail, get_caller
from regio_controlpanel.main import OPEN_ROUTERS, PUBLIC_ROUTERS, create_app

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _depends_on(dependant, target) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def _routes() -> list[APIRoute]:
    """Every API route the app serves, through the routers it includes."""
    def walk(routes):
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            elif hasattr(r, "original_router"):  # an included router
                yield from walk(r.original_router.routes)
    return list(walk(create_app().routes))


def test_the_app_serves_the_public_routers_and_nothing_else_unchecked():
    included = {id(r.original_router) for r in create_app().routes if hasattr(r, "original_router")}
    assert included == {id(router) for router in (*PUBLIC_ROUTERS, *OPEN_ROUTERS, *web.ROUTERS)}


def test_every_public_route_checks_the_caller():
    """As Tsuru's CI does: a public handler without an authorisation check is a defect."""
    public = [r for r in _routes() if r.path.split("/")[1] in ("apps", "iam", "billing")]
    assert len(public) > 40
    unchecked = [f"{sorted(r.methods)} {r.path}" for r in public if not _depends_on(r.dependant, get_caller)]
    assert unchecked == []


def test_no_route_outside_the_public_api_or_platform_routes():
    other = [r.path for r in create_app().routes if not hasattr(r, "original_router")]
    assert set(other) <= {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                          "/redoc", web.STATIC_PATH}


def test_every_mutating_route_records_an_audit_event():
    """The API's routes through its audit dependency; the web's forms through theirs, which
    takes the session's caller and checks its CSRF token (test_web_route_guards.py), but for
    signing in, which has no caller yet and records its event itself."""
    mutating = [r for r in _routes() if r.methods & MUTATING]
    assert len(mutating) > 15
    web_routes = {id(r) for router in web.ROUTERS for r in router.routes}
    unaudited = [f"{sorted(r.methods)} {r.path}" for r in mutating
                 if not _depends_on(r.dependant, web.deps.audit_trail if id(r) in web_routes else audit_trail)]
    assert unaudited == ["['POST'] /web/login"]


def test_open_routes_only_read_what_their_token_names():
    """A route without a caller is outside the public API's paths, changes nothing, and is
    reached only through a secret in its path."""
    open_routes = [r for router in OPEN_ROUTERS for r in router.routes]
    assert open_routes
    for route in open_routes:
        assert route.path.split("/")[1] not in ("apps", "iam", "billing"), route.path
        assert route.methods == {"GET"}, route.path
        assert route.path.startswith("/downloads/{token}"), route.path
        assert not _depends_on(route.dependant, audit_trail)
