"""Roles, scopes and organisations: every request is authorised against the caller's role
where the object lives, and what the caller may not see does not exist for them."""
import re
import secrets
import uuid
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import utcnow
from regio_controlpanel.db.models import (
    Backup,
    BackupDownload,
    BackupDownloadPart,
    BackupRestore,
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
async def one_of_everything(api, application, seeded, settings):
    """An object of each kind in the seeded organisation, keyed by the path segment that names it."""
    env_id = application["test_status"]["uuid"]
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
        "applications": application["uuid"], "environments": env_id, "repositories": application["repository"],
        "environment-variables": variable["uuid"], "domains": domain["uuid"], "deployments": deployment["uuid"],
        "memberships": memberships["results"][0]["uuid"], "organisations": seeded["organisation"],
        "service-instances": instance["uuid"], "tokens": (await api.get("/iam/v3/tokens/")).json()["results"][0]["uuid"],
        **await backup_objects(settings, env_id, next(s["uuid"] for s in services if s["type"] == "STORAGE")),
    }


PUBLIC_OBJECTS = {"regions", "services", "application-plan-groups"}  # shared by every organisation


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
                 "/apps/v3/repositories/", "/apps/v3/backups/"):
        body = (await stranger.get(path, params={"application": app_id})).json()
        ours = set(one_of_everything.values())
        assert not {r["uuid"] for r in body["results"]} & ours, path
    orgs = (await stranger.get("/iam/v3/memberships/")).json()["results"]
    assert one_of_everything["organisations"] not in {m["organisation"] for m in orgs}
    events = (await stranger.get("/iam/v3/audit-events/", params={"page_size": 1000})).json()["results"]
    assert one_of_everything["organisations"] not in {e["organisation"] for e in events}
