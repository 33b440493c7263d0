"""Roles, scopes and organisations: every request is authorised against the caller's role
where the object lives, and what the caller may not see does not exist for them."""
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import get_args

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import func, select, text

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import utcnow
from regio_controlpanel.db.billing import Invoice, Plan
from regio_controlpanel.db.models import (
    Backup,
    BackupDownload,
    BackupDownloadPart,
    BackupRestore,
    Migration,
    Organisation,
    PlanGroup,
    Region,
    Service,
    ServiceInstanceBackup,
)
from regio_controlpanel.main import create_app
from regio_controlpanel.services.crypto import Vault


async def test_members_operate_but_only_admins_manage(member, application):
    env_id = application["test_status"]["uuid"]
    dev = await member("member")
    variable = await dev.post("/apps/v3/environment-variables/", json={"environment": env_id, "name": "A", "value": "1"})
    assert variable.status_code == 201
    refused = await dev.patch(f"/apps/v3/applications/{application['uuid']}/", json={"name": "Renamed"})
    assert refused.status_code == 403 and "member" in refused.json()["detail"]
    assert (await dev.delete(f"/apps/v3/applications/{application['uuid']}/")).status_code == 403
    admin = await member("admin")
    assert (await admin.patch(f"/apps/v3/applications/{application['uuid']}/", json={"name": "Renamed"})).status_code == 200


async def test_billing_sees_the_organisation_but_no_application(member, application):
    billing = await member("billing")
    assert application["organisation"] in {o["uuid"] for o in (await billing.get("/iam/v3/organisations/")).json()["results"]}
    assert (await billing.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 404
    assert (await billing.get("/apps/v3/applications/")).json()["count"] == 0


async def test_a_member_scoped_to_one_environment_sees_only_it(member, api, application):
    test_env, live_env = application["test_status"]["uuid"], application["live_status"]["uuid"]
    scoped = await member("member", environments=[test_env])
    assert (await scoped.get(f"/apps/v3/environments/{test_env}/")).status_code == 200
    assert (await scoped.get(f"/apps/v3/environments/{live_env}/")).status_code == 404
    listed = (await scoped.get("/apps/v3/environments/", params={"application": application["uuid"]})).json()
    assert [e["uuid"] for e in listed["results"]] == [test_env]
    app_view = (await scoped.get(f"/apps/v3/applications/{application['uuid']}/")).json()
    assert [e["slug"] for e in app_view["environments"]] == ["test"] and "live_status" not in app_view
    assert (await scoped.post("/apps/v3/environment-variables/", json={
        "environment": test_env, "name": "OK", "value": "1"})).status_code == 201
    response = await scoped.post("/apps/v3/environment-variables/", json={"environment": live_env, "name": "NO", "value": "1"})
    assert response.status_code == 400 and response.json() == {"environment": ["Environment not found."]}
    other = (await api.post("/apps/v3/applications/", json={
        "name": "Other", "slug": f"other-{uuid.uuid4().hex[:6]}", "organisation": application["organisation"]})).json()
    assert (await scoped.get(f"/apps/v3/applications/{other['uuid']}/")).status_code == 404


async def test_an_application_scope_covers_its_environments_and_nothing_else(member, api, application, seeded):
    scoped = await member("admin", applications=[application["uuid"]])
    envs = (await scoped.get("/apps/v3/environments/")).json()
    assert {e["application"] for e in envs["results"]} == {application["uuid"]} and envs["count"] == 2
    # Narrowed: no organisation-wide acts, even as admin.
    response = await scoped.post("/apps/v3/applications/", json={
        "name": "x", "slug": f"x-{uuid.uuid4().hex[:6]}", "organisation": seeded["organisation"]})
    assert response.status_code == 403
    assert (await scoped.get("/iam/v3/audit-events/", params={"organisation": seeded["organisation"]})).status_code == 403


async def test_a_removed_members_token_loses_the_organisation_at_once(member, api, application):
    dev = await member("member")
    assert (await dev.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 200
    assert (await api.delete(f"/iam/v3/memberships/{dev.membership['uuid']}/")).status_code == 204
    assert (await dev.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 404
    assert (await dev.get("/apps/v3/applications/")).json()["count"] == 0


async def test_roles_change_and_the_last_owner_stays(member, api, seeded):
    admin = await member("admin")
    dev = await member("member")
    promoted = await admin.patch(f"/iam/v3/memberships/{dev.membership['uuid']}/", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    response = await admin.patch(f"/iam/v3/memberships/{dev.membership['uuid']}/", json={"role": "owner"})
    assert response.status_code == 403 and "owner" in response.json()["detail"]
    mine = next(m for m in (await api.get("/iam/v3/memberships/", params={"organisation": seeded["organisation"]})).json()["results"]
                if m["email"] == "admin@example.test")
    response = await api.patch(f"/iam/v3/memberships/{mine['uuid']}/", json={"role": "admin"})
    assert response.status_code == 400 and "owner" in response.json()["role"][0]
    response = await api.post("/iam/v3/memberships/", json={
        "organisation": seeded["organisation"], "email": dev.membership["email"], "role": "member"})
    assert response.status_code == 409 and "email" in response.json()


async def test_a_new_organisation_is_owned_by_its_creator(stranger):
    created = await stranger.post("/iam/v3/organisations/", json={"name": "Second"})
    assert created.status_code == 201 and created.json()["role"] == "owner"
    members = (await stranger.get("/iam/v3/memberships/", params={"organisation": created.json()["uuid"]})).json()
    assert [m["role"] for m in members["results"]] == ["owner"]


async def backup_objects(settings, env_id: str, storage_service_id: str) -> dict[str, str]:
    """A backup with one part, a restore and a download link, as the consumer leaves them
    (looking them up needs no servers)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            backup = Backup(environment_id=uuid.UUID(env_id), state="COMPLETED", success="SUCCESS", trigger="MANUAL")
            session.add(backup)
            await session.flush()
            part = ServiceInstanceBackup(backup_id=backup.id, storage_service_id=uuid.UUID(storage_service_id),
                                         type="STORAGE", prefix="DEFAULT", state="COMPLETED", success="SUCCESS", size=0)
            restore = BackupRestore(backup_id=backup.id, environment_id=backup.environment_id, state="COMPLETED",
                                    success="SUCCESS")
            session.add_all([part, restore])
            await session.flush()
            download = BackupDownload(
                backup_id=backup.id, service_instance_backup_ids=[str(part.id)], trigger="MANUAL",
                token_hash=secrets.token_hex(32),
                token_encrypted=Vault(settings.secrets_key, settings.region_key).encrypt(secrets.token_urlsafe(32)),
                expires_at=utcnow() + timedelta(hours=1))
            session.add(download)
            await session.flush()
            download_part = BackupDownloadPart(download_id=download.id, service_instance_backup_id=part.id)
            session.add(download_part)
            await session.flush()
            return {"backups": str(backup.id), "service-instance-backups": str(part.id),
                    "backup-restores": str(restore.id), "backup-downloads": str(download.id),
                    "backup-download-service-instances": str(download_part.id)}
    finally:
        await engine.dispose()


@pytest.fixture
async def one_of_everything(api, paid_application, seeded, settings):
    """An object of each kind in the seeded organisation, keyed by the path segment that names it."""
    env_id = paid_application["test_status"]["uuid"]
    variable = (await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "SECRET", "value": "x", "is_sensitive": True})).json()
    domain = (await api.post("/apps/v3/domains/", json={
        "environment": env_id, "domain": f"www.{uuid.uuid4().hex[:8]}.example.com"})).json()
    deployment = (await api.post("/apps/v3/deployments/", json={"environment": env_id})).json()
    memberships = (await api.get("/iam/v3/memberships/", params={"organisation": seeded["organisation"]})).json()
    services = (await api.get("/apps/v3/services/")).json()["results"]
    instance = (await api.post("/apps/v3/service-instances/", json={
        "environment": env_id, "service": services[0]["uuid"], "prefix": "TENANCY"})).json()
    return {
        "applications": paid_application["uuid"], "environments": env_id, "repositories": paid_application["repository"],
        "environment-variables": variable["uuid"], "domains": domain["uuid"], "deployments": deployment["uuid"],
        "memberships": memberships["results"][0]["uuid"], "organisations": seeded["organisation"],
        "service-instances": instance["uuid"], "tokens": (await api.get("/iam/v3/tokens/")).json()["results"][0]["uuid"],
        **await backup_objects(settings, env_id, next(s["uuid"] for s in services if s["type"] == "STORAGE")),
        "application-migrations": await ended_migration(settings, paid_application),
        "invoices": await an_invoice(settings, seeded["organisation"]),
        "plans": await a_dedicated_plan(settings, seeded["organisation"]),
    }


async def a_dedicated_plan(settings, organisation: str) -> str:
    """A plan of a plan group dedicated to the organisation: no other sees or uses it."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            group = PlanGroup(name=f"Ours {uuid.uuid4().hex[:8]}", organisation_id=uuid.UUID(organisation))
            session.add(group)
            await session.flush()
            plan = Plan(plan_group_id=group.id, name="Ours", position=0, memory_sizes_mb=[256, 512], max_instances=2,
                        custom_domains=True, sleeps_when_idle=False, included={})
            session.add(plan)
            await session.flush()
            return str(plan.id)
    finally:
        await engine.dispose()


async def an_invoice(settings, organisation: str) -> str:
    """An invoice of the organisation for a month long past (a month's invoice is made once)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            made = await session.scalar(select(func.count()).select_from(Invoice).where(
                Invoice.organisation_id == uuid.UUID(organisation)))
            start = datetime(1990 - made, 1, 1, tzinfo=UTC)
            invoice = Invoice(number=f"T-{uuid.uuid4().hex[:12]}", organisation_id=uuid.UUID(organisation),
                              period_start=start, period_end=start.replace(month=2), currency="EUR",
                              subtotal=Decimal(0), tax_rate=Decimal(0), tax=Decimal(0), total=Decimal(0),
                              billing_details={}, issued_at=start.replace(month=2))
            session.add(invoice)
            await session.flush()
            return str(invoice.id)
    finally:
        await engine.dispose()


async def ended_migration(settings, application: dict) -> str:
    """A migration as the runner leaves a failed one (making one needs a second region)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            region = uuid.UUID(application["region"])
            migration = Migration(application_id=uuid.UUID(application["uuid"]), source_region_id=region,
                                  target_region_id=region, status="failure", steps=[],
                                  requested_by="tenancy@example.test", ended_at=utcnow())
            session.add(migration)
            await session.flush()
            return str(migration.id)
    finally:
        await engine.dispose()


PUBLIC_OBJECTS = {"regions", "services", "application-plan-groups", "app-templates"}  # shared by every organisation


async def test_every_route_answers_404_for_another_organisations_object(stranger, one_of_everything):
    """Walks every route with an id in its path, calling it with our object as a stranger."""
    routes = [r for r in create_app().routes if hasattr(r, "original_router")]
    checked = 0
    for route in (r for included in routes for r in included.original_router.routes if isinstance(r, APIRoute)):
        if "{uuid}" not in route.path or not route.include_in_schema:
            continue
        kind = re.search(r"/([a-z-]+)/\{uuid\}", route.path).group(1)
        if kind in PUBLIC_OBJECTS:
            continue
        assert kind in one_of_everything, f"no object of kind {kind} to try {route.path} with"
        path = route.path.replace("{uuid}", one_of_everything[kind])
        for method in route.methods:
            response = await stranger.request(method, path, json={})
            assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
            checked += 1
    assert checked >= 20


async def test_lists_show_a_stranger_nothing_of_ours(stranger, one_of_everything):
    app_id = one_of_everything["applications"]
    for path in ("/apps/v3/applications/", "/apps/v3/environments/", "/apps/v3/environment-variables/",
                 "/apps/v3/domains/", "/apps/v3/deployments/", "/apps/v3/service-instances/",
                 "/apps/v3/repositories/", "/apps/v3/backups/", "/apps/v3/application-migrations/"):
        body = (await stranger.get(path, params={"application": app_id})).json()
        ours = set(one_of_everything.values())
        assert not {r["uuid"] for r in body["results"]} & ours, path
    orgs = (await stranger.get("/iam/v3/memberships/")).json()["results"]
    assert one_of_everything["organisations"] not in {m["organisation"] for m in orgs}
    events = (await stranger.get("/iam/v3/audit-events/", params={"page_size": 1000})).json()["results"]
    assert one_of_everything["organisations"] not in {e["organisation"] for e in events}


# --- another organisation's ids in request bodies ---------------------------------------------

async def private_objects(settings) -> dict[str, str]:
    """What an operator gives one organisation alone (a new one, so that the seeded one's
    applications do not start using them): a dedicated region, a plan group and a database
    server of its own in the public region (looking them up needs no servers)."""
    engine = make_engine(settings.database_url)
    suffix = uuid.uuid4().hex[:8]
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            organisation = Organisation(name="Private")
            session.add(organisation)
            await session.flush()
            public = (await session.execute(select(Region).where(Region.slug == settings.region))).scalar_one()
            region = Region(slug=f"dedicated-{suffix}", name="Dedicated", domain=f"{suffix}.dedicated.localhost",
                            physical_region_id=public.physical_region_id, organisation_id=organisation.id)
            group = PlanGroup(name=f"Dedicated {suffix}", organisation_id=organisation.id)
            server = Service(region_id=public.id, organisation_id=organisation.id, type="DATABASE",
                             identifier=f"own-postgres-{suffix}", name="Their own PostgreSQL")
            session.add_all([region, group, server])
            await session.flush()
            return {"region": str(region.id), "plan_group": str(group.id), "service": str(server.id)}
    finally:
        await engine.dispose()


async def rows_of_every_table(settings) -> dict[str, list[str]]:
    """Every row of the control panel's schema, but the outbox's and inbox's (the relays change
    those on their own time): what a refused request must leave as it was."""
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            tables = (await connection.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'controlpanel' "
                "AND table_type = 'BASE TABLE' AND table_name NOT LIKE '%outbox%' AND table_name NOT LIKE '%inbox%' "
                "AND table_name <> 'alembic_version'"))).scalars().all()
            return {table: sorted((await connection.execute(text(
                f'SELECT to_jsonb(t)::text FROM controlpanel."{table}" t'))).scalars().all()) for table in tables}
    finally:
        await engine.dispose()


@pytest.fixture
async def strangers_own(stranger, settings, seeded):
    """The stranger's objects of each kind, so that each body below is valid but for the one
    field that names ours."""
    org = stranger.organisation
    repo = (await stranger.post("/apps/v3/repositories/", json={"organisation": org, "url": "file:///srv/git/x.git"})).json()
    app = (await stranger.post("/apps/v3/applications/", json={
        "name": "Theirs", "slug": f"theirs-{uuid.uuid4().hex[:8]}", "organisation": org,
        "repository": repo["uuid"]})).json()
    env_id = app["test_status"]["uuid"]
    deployment = (await stranger.post("/apps/v3/deployments/", json={"environment": env_id})).json()
    services = (await stranger.get("/apps/v3/services/")).json()["results"]
    storage = next(s["uuid"] for s in services if s["type"] == "STORAGE")
    instance = (await stranger.post("/apps/v3/service-instances/", json={
        "environment": env_id, "service": storage, "prefix": "THEIRS"})).json()
    member = (await stranger.post("/iam/v3/memberships/", json={
        "organisation": org, "email": f"{uuid.uuid4().hex[:6]}@elsewhere.test", "role": "member"})).json()
    group = next(g for g in (await stranger.get("/billing/v3/application-plan-groups/")).json()["results"]
                 if g["is_free"])
    return {"organisation": org, "repository": repo["uuid"], "application": app["uuid"], "environment": env_id,
            "deployment": deployment["uuid"], "service": storage, "service_instance": instance["uuid"],
            "membership": member["uuid"], "plan_group": group["uuid"], "plan": group["plans"][0]["uuid"],
            "region": seeded["region"],
            **await backup_objects(settings, env_id, storage)}


def body_cases(own: dict[str, str]) -> list[tuple[str, str, dict, dict[str, str]]]:
    """(method, path, a body valid with the stranger's own objects, {field: the kind of object it names})."""
    new = uuid.uuid4().hex[:8]
    return [
        ("POST", "/iam/v3/memberships/", {"organisation": own["organisation"], "email": f"m-{new}@elsewhere.test",
                                          "role": "member", "scopes": {"applications": [], "environments": []}},
         {"organisation": "organisations", "scopes.applications": "applications",
          "scopes.environments": "environments"}),
        ("PATCH", f"/iam/v3/memberships/{own['membership']}/", {"scopes": {"applications": [], "environments": []}},
         {"scopes.applications": "applications", "scopes.environments": "environments"}),
        ("POST", "/apps/v3/repositories/", {"organisation": own["organisation"], "url": "file:///srv/git/y.git"},
         {"organisation": "organisations"}),
        ("POST", "/apps/v3/applications/", {"name": "New", "slug": f"new-{new}", "organisation": own["organisation"],
                                            "region": own["region"], "repository": own["repository"],
                                            "plan_group": own["plan_group"], "plan": own["plan"]},
         {"organisation": "organisations", "region": "region", "repository": "repositories",
          "plan_group": "plan_group", "plan": "plans"}),
        ("PATCH", f"/apps/v3/applications/{own['application']}/", {"repository": own["repository"],
                                                                   "plan_group": own["plan_group"]},
         {"repository": "repositories", "plan_group": "plan_group"}),
        ("POST", "/billing/v3/subscriptions/", {"application": own["application"], "plan": own["plan"]},
         {"application": "applications", "plan": "plans"}),
        ("POST", "/apps/v3/environments/", {"application": own["application"], "slug": f"e{new}",
                                            "copy_from": own["environment"]},
         {"application": "applications", "copy_from": "environments"}),
        ("POST", "/apps/v3/environment-variables/", {"environment": own["environment"], "name": "V", "value": "1"},
         {"environment": "environments"}),
        ("POST", "/apps/v3/domains/", {"environment": own["environment"], "domain": f"{new}.elsewhere.example.com"},
         {"environment": "environments"}),
        ("POST", "/apps/v3/deployments/", {"environment": own["environment"], "redeploy": own["deployment"]},
         {"environment": "environments", "redeploy": "deployments"}),
        ("POST", "/apps/v3/service-instances/", {"environment": own["environment"], "service": own["service"],
                                                 "region": own["region"], "prefix": f"P{new.upper()}"},
         {"environment": "environments", "service": "service", "region": "region"}),
        ("POST", "/apps/v3/backups/", {"environment": own["environment"], "services": [own["service_instance"]]},
         {"environment": "environments", "services": "service-instances"}),
        ("POST", "/apps/v3/backup-restores/", {"backup": own["backups"], "environment": own["environment"],
                                               "service_instance_backups": [own["service-instance-backups"]]},
         {"backup": "backups", "environment": "environments", "service_instance_backups": "service-instance-backups"}),
        ("POST", "/apps/v3/application-migrations/", {"application": own["application"], "region": own["region"]},
         {"application": "applications", "region": "region"}),
        ("POST", "/apps/v3/backup-downloads/", {"backup": own["backups"],
                                                "service_instance_backups": [own["service-instance-backups"]]},
         {"backup": "backups", "service_instance_backups": "service-instance-backups"}),
    ]


def _with(body: dict, field: str, value: str) -> dict:
    """``body`` with ``field`` (dotted for a nested one) naming ``value``; a list field names it alone."""
    body = {**body}
    *parents, last = field.split(".")
    inner = body
    for parent in parents:
        inner[parent] = {**inner[parent]}
        inner = inner[parent]
    inner[last] = [value] if isinstance(inner.get(last), list) else value
    return body


def _id_fields(model, prefix: str = "") -> set[str]:
    """The fields of a body model that name an object (a UUID, a list of them, or nested)."""
    found = set()
    for name, info in model.model_fields.items():
        kinds = [a for arg in (get_args(info.annotation) or (info.annotation,)) for a in (get_args(arg) or (arg,))]
        if uuid.UUID in kinds:
            found.add(prefix + name)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _id_fields(kind, f"{prefix}{name}.")
    return found


async def test_every_body_field_naming_an_object_refuses_another_organisations(
        stranger, strangers_own, one_of_everything, seeded, settings):
    """The stranger sends, in a body otherwise valid for its own objects, one of ours at a time:
    each is refused with the field named, and no row anywhere (the audit trail's included) changes."""
    ours = {**one_of_everything, **await private_objects(settings)}
    cases = body_cases(strangers_own)

    # Every body field of the API that names an object is tried: a new one needs a case here.
    api_routes = [r for included in create_app().routes if hasattr(included, "original_router")
                  for r in included.original_router.routes
                  if isinstance(r, APIRoute) and r.include_in_schema and r.body_field is not None]
    assert api_routes, "the walk found no API route with a body"
    tried = {(method, re.sub(r"/[0-9a-f-]{36}/", "/{uuid}/", path), field)
             for method, path, _, fields in cases for field in fields}
    for route in api_routes:
        for method in route.methods & {"POST", "PATCH", "PUT"}:
            for field in _id_fields(route.body_field.field_info.annotation):
                assert (method, route.path, field) in tried, f"{method} {route.path} {field} is not tried"

    checked = 0
    for method, path, body, fields in cases:
        for field, kind in fields.items():
            before = await rows_of_every_table(settings)
            response = await stranger.request(method, path, json=_with(body, field, ours[kind]))
            where = f"{method} {path} with our {kind} in {field}"
            assert 400 <= response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if response.status_code == 400:
                assert {field, field.split(".")[0]} & set(response.json()), f"{where}: {response.text}"
            after = await rows_of_every_table(settings)
            changed = [t for t in before if before[t] != after.get(t)]
            assert not changed, f"{where}: {response.status_code}, yet {changed} changed"
            checked += 1
    assert checked >= 25
