"""The web Control Panel's guards, checked by walking its routes so a new page cannot forget
them: every page but signing in needs a session (the same Caller the API builds from a
token), every form that changes state checks the session's CSRF token and records its audit
event, and every page of an object is 404 to a user of another organisation."""
import re
import uuid
from datetime import UTC, datetime

import httpx
from fastapi.routing import APIRoute

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel import web
from regio_controlpanel.db.models import Backup, Migration
from regio_controlpanel.web import deps
from regio_controlpanel.web.routes import auth

from .test_route_guards import MUTATING, _depends_on
from .test_tenancy import an_invoice
from .web_client import Browser, new_user

# Signing in has no session yet: it checks the sign-in form's own token and records its event
# itself (test_web.py: test_audit_events_name_the_web_user).
OPEN = {("GET", "/"), ("GET", "/web/login"), ("POST", "/web/login")}
FORM = {"name": "X", "value": "1", "domain": "walked.example.org", "kind": "ALIAS", "instances": "1",
        "memory_mb": "512", "service": str(uuid.uuid4()), "prefix": "DEFAULT", "email": "walked@example.test",
        "role": "member", "branch": "main", "health_check_path": "/", "slug": "walked", "copy_from": str(uuid.uuid4()),
        "region": str(uuid.uuid4())}


async def _completed_backup(settings, env_id: str) -> uuid.UUID:
    """A backup row as the consumer leaves one (taking a real one needs the region's servers:
    test_web.py does that); enough for the walk, which is refused before any of its data is read."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        backup = Backup(environment_id=uuid.UUID(env_id), state="COMPLETED", success="SUCCESS", trigger="MANUAL")
        session.add(backup)
        await session.flush()
    await engine.dispose()
    return backup.id


async def _ended_migration(settings, application: dict) -> uuid.UUID:
    """A migration row as the runner leaves a failed one (test_web_migrations.py makes real ones)."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        region = uuid.UUID(application["region"])
        migration = Migration(application_id=uuid.UUID(application["uuid"]), source_region_id=region,
                              target_region_id=region, status="failure", steps=[], requested_by="walk@example.test",
                              ended_at=datetime.now(UTC))
        session.add(migration)
        await session.flush()
    await engine.dispose()
    return migration.id


def _web_routes() -> list[APIRoute]:
    return [r for router in web.ROUTERS for r in router.routes if isinstance(r, APIRoute)]


def _key(route: APIRoute) -> set[tuple[str, str]]:
    return {(m, route.path) for m in route.methods}


def test_the_web_is_under_its_prefix_and_kept_out_of_the_api_document():
    for route in _web_routes():
        assert route.path == "/" or route.path.startswith("/web/"), route.path
        assert not route.include_in_schema, route.path


def test_every_page_but_signing_in_needs_a_session():
    routes = _web_routes()
    assert {k for r in routes for k in _key(r)} >= OPEN
    unchecked = [r.path for r in routes if not _key(r) <= OPEN and not _depends_on(r.dependant, deps.session_caller)]
    assert unchecked == []


def test_every_form_that_changes_state_checks_csrf_and_is_audited():
    mutating = [r for r in _web_routes() if r.methods & MUTATING and not _key(r) <= OPEN]
    assert len(mutating) >= 20
    for route in mutating:
        assert _depends_on(route.dependant, deps.check_csrf), route.path
        assert _depends_on(route.dependant, deps.audit_trail), route.path
    assert [r.endpoint for r in _web_routes() if _key(r) & {("POST", "/web/login")}] == [auth.sign_in]


async def test_every_page_of_an_object_is_not_found_for_another_organisation(app, settings, api, paid_application):
    """As test_tenancy's walk over the API: a stranger's session gets 404 for every object."""
    env_id = paid_application["test_status"]["uuid"]
    variable = (await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "WALKED", "value": "1"})).json()
    deployment = (await api.post("/apps/v3/deployments/", json={"environment": env_id})).json()
    domain = (await api.post("/apps/v3/domains/", json={
        "environment": env_id, "domain": f"walk-{uuid.uuid4().hex[:6]}.example.org"})).json()
    token = (await api.post("/iam/v3/tokens/", json={"name": "walked"})).json()
    membership = (await api.get("/iam/v3/memberships/", params={"organisation": paid_application["organisation"]})
                  ).json()["results"][0]
    offered = (await api.get("/apps/v3/services/", params={"website": paid_application["uuid"]})).json()["results"][0]
    instance = (await api.post("/apps/v3/service-instances/", json={
        "environment": env_id, "service": offered["uuid"], "prefix": "WALKED"})).json()
    objects = {"applications": paid_application["uuid"], "environments": env_id, "variables": variable["uuid"],
               "deployments": deployment["uuid"], "domains": domain["uuid"], "tokens": token["uuid"],
               "organisations": paid_application["organisation"], "memberships": membership["uuid"],
               "service-instances": instance["uuid"], "backups": str(await _completed_backup(settings, env_id)),
               "migrations": str(await _ended_migration(settings, paid_application)),
               "invoices": await an_invoice(settings, paid_application["organisation"])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        stranger = Browser(client)
        await stranger.sign_in(await new_user(settings))
        checked = 0
        for route in _web_routes():
            if "{uuid}" not in route.path:
                continue
            kind = re.search(r"^/web/([a-z-]+)/\{uuid\}", route.path).group(1)
            path = route.path.replace("{uuid}", objects[kind])
            for method in route.methods:
                if method == "GET":
                    response = await client.get(path)
                else:  # every form's fields, valid, so that only the object can be refused
                    response = await stranger.submit("/web/", path, FORM)
                assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
                checked += 1
        assert checked >= 20
