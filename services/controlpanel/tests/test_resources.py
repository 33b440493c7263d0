"""Changing and removing what the API creates: applications, environments, variables and
domains, each change on the audit trail, and the controller told what to stop or re-route."""
import asyncio
import uuid

import pytest
from sqlalchemy import text

from regio_common import bus
from regio_common.db import make_engine
from regio_common.messages import EnvironmentHostsChanged, EnvironmentRetired, decode, subject_for


@pytest.fixture
async def commands(settings):
    """The control panel's commands about environments, taken as the controller would take them."""
    nc = await bus.connect(settings.nats_url, "test-environment-commands")
    js = nc.jetstream()
    durable = f"test-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subject_for(EnvironmentRetired, settings.region), durable=durable,
                                  stream=bus.COMMANDS.name)

    taken = []  # in order; each is handed out once

    async def take(kind, environment_id: str, timeout=10.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in taken:
                if isinstance(message, kind) and str(message.environment_id) == environment_id:
                    taken.remove(message)
                    return message
            if asyncio.get_running_loop().time() > deadline:
                break
            try:
                msgs = await sub.fetch(10, timeout=1)
            except Exception:
                continue
            for msg in msgs:
                await msg.ack()
                taken.append(decode(msg.headers, msg.data))
        raise AssertionError(f"no {kind.__name__} for {environment_id}")

    yield take
    await sub.unsubscribe()
    await js.delete_consumer(bus.COMMANDS.name, durable)
    await nc.close()


async def audit(api, target: str) -> list[dict]:
    return (await api.get("/iam/v3/audit-events/", params={"target": target})).json()["results"]


async def test_an_application_is_renamed_and_given_release_commands(api, application):
    response = await api.patch(f"/apps/v3/applications/{application['uuid']}/", json={
        "name": "Renamed", "release_commands": [{"label": "migrate", "command": "python manage.py migrate"}]})
    assert response.status_code == 200, response.text
    got = (await api.get(f"/apps/v3/applications/{application['uuid']}/")).json()
    assert got["name"] == "Renamed" and got["release_commands"] == [{"label": "migrate", "command": "python manage.py migrate"}]
    assert got["slug"] == application["slug"]
    response = await api.patch(f"/apps/v3/applications/{application['uuid']}/", json={"slug": "other"})
    assert response.status_code == 400 and response.json() == {"slug": ["Unknown field."]}
    [event, *_] = await audit(api, application["uuid"])
    assert event["action"] == "application.update" and event["actor_email"] == "admin@example.test"
    assert event["changes"]["name"] == "Renamed" and event["request_id"]


async def test_deleting_an_application_retires_its_environments(api, application, commands):
    env_ids = [application["test_status"]["uuid"], application["live_status"]["uuid"]]
    assert (await api.delete(f"/apps/v3/applications/{application['uuid']}")).status_code == 204
    assert (await api.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 404
    assert (await api.get(f"/apps/v3/environments/{env_ids[0]}/")).status_code == 404
    for env_id in env_ids:
        assert await commands(EnvironmentRetired, env_id)
    assert [e["action"] for e in await audit(api, application["uuid"])] == ["application.delete", "application.create"]


async def test_a_custom_environment_is_copied_with_its_variables(api, application, commands):
    test_env = application["test_status"]["uuid"]
    await api.post("/apps/v3/environment-variables/", json={"environment": test_env, "name": "PLAIN", "value": "p"})
    await api.post("/apps/v3/environment-variables/", json={
        "environment": test_env, "name": "HIDDEN", "value": "h", "is_sensitive": True})
    response = await api.post("/apps/v3/environments/", json={
        "application": application["uuid"], "slug": "review-1", "branch": "feature"})
    assert response.status_code == 201, response.text
    env = response.json()
    assert env["branch"] == "feature" and env["site_url"].startswith(f"http://{application['slug']}-review-1.")
    copied = {v["name"]: v for v in (await api.get("/apps/v3/environment-variables/",
                                                   params={"environment": env["uuid"]})).json()["results"]}
    assert copied["PLAIN"]["value"] == "p" and copied["HIDDEN"]["is_sensitive"] and copied["HIDDEN"]["value"] is None
    again = await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "review-1"})
    assert again.status_code == 409 and "slug" in again.json()
    bad = await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "Review_1"})
    assert bad.status_code == 400 and "slug" in bad.json()
    changed = await api.patch(f"/apps/v3/environments/{env['uuid']}/", json={"branch": "other", "health_check_path": "/up"})
    assert changed.status_code == 200 and changed.json()["branch"] == "other"
    assert changed.json()["health_check_path"] == "/up"
    response = await api.delete(f"/apps/v3/environments/{test_env}/")
    assert response.status_code == 400 and "delete the application" in response.json()["non_field_errors"][0]
    assert (await api.delete(f"/apps/v3/environments/{env['uuid']}/")).status_code == 204
    assert await commands(EnvironmentRetired, env["uuid"])


async def test_variables_are_changed_and_removed_and_secrets_stay_secret(api, application, settings):
    env_id = application["test_status"]["uuid"]
    plain = (await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "COLOUR", "value": "red"})).json()
    changed = await api.patch(f"/apps/v3/environment-variables/{plain['uuid']}/", json={"value": "blue"})
    assert changed.status_code == 200 and changed.json()["value"] == "blue"
    hidden = await api.patch(f"/apps/v3/environment-variables/{plain['uuid']}/", json={"is_sensitive": True})
    assert hidden.json()["value"] is None and hidden.json()["is_sensitive"]
    response = await api.patch(f"/apps/v3/environment-variables/{plain['uuid']}/", json={"is_sensitive": False})
    assert response.status_code == 400 and "is_sensitive" in response.json()
    events = await audit(api, plain["uuid"])
    assert [e["action"] for e in events] == ["environment_variable.update"] * 2 + ["environment_variable.create"]
    assert events[0]["changes"]["value"] == "(sensitive)"
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        trail = (await conn.execute(text("select string_agg(changes::text, ' ') from controlpanel.audit_events"))).scalar()
    await engine.dispose()
    assert "very-secret" not in trail and "s3cr3t-value" not in trail
    assert (await api.delete(f"/apps/v3/environment-variables/{plain['uuid']}/")).status_code == 204
    assert (await api.get(f"/apps/v3/environment-variables/{plain['uuid']}/")).status_code == 404


async def test_domains_belong_to_one_environment_and_follow_the_primary(api, paid_application, seeded, settings, commands,
                                                                        verified_domain):
    env_id = paid_application["test_status"]["uuid"]
    name = f"www.{uuid.uuid4().hex[:8]}.example.com"
    first = await verified_domain(env_id, name.upper() + ".", "PRIMARY")
    assert first["domain"] == name and first["is_primary"]
    hosts = await commands(EnvironmentHostsChanged, env_id)
    assert hosts.hosts[0] == name and f"{paid_application['slug']}-stage." in hosts.hosts[1]
    other = (await api.post("/apps/v3/applications/", json={
        "name": "Other", "slug": f"other-{uuid.uuid4().hex[:6]}", "organisation": seeded["organisation"],
        "plan_group": paid_application["plan_group"]})).json()
    taken = await api.post("/apps/v3/domains/", json={"environment": other["test_status"]["uuid"], "domain": name})
    assert taken.status_code == 409 and taken.json() == {"domain": [f"The host {name} already belongs to another environment."]}
    for bad in ("http://x.example.com", "x.example.com:8080", "nodot", f"x.{'a' * 64}.com"):
        response = await api.post("/apps/v3/domains/", json={"environment": env_id, "domain": bad})
        assert response.status_code == 400 and "domain" in response.json(), bad
    regional = await api.post("/apps/v3/domains/", json={"environment": env_id, "domain": f"mine.{settings.region_domain}"})
    assert regional.status_code == 400 and "region" in regional.json()["domain"][0]
    second = await verified_domain(env_id, "apex-" + name.removeprefix("www."))
    assert second["kind"] == "ALIAS"
    promoted = await api.patch(f"/apps/v3/domains/{second['uuid']}/", json={"kind": "PRIMARY"})
    assert promoted.json()["is_primary"]
    assert (await api.get(f"/apps/v3/domains/{first['uuid']}/")).json()["kind"] == "ALIAS"
    listed = (await api.get("/apps/v3/domains/", params={"environment": env_id})).json()
    assert sum(d["is_primary"] for d in listed["results"]) == 1
    assert (await commands(EnvironmentHostsChanged, env_id)).hosts[:2] == [name, second["domain"]]  # alias added
    assert (await commands(EnvironmentHostsChanged, env_id)).hosts[:2] == [second["domain"], name]  # promoted
    assert (await api.delete(f"/apps/v3/domains/{second['uuid']}/")).status_code == 204
    after_delete = await commands(EnvironmentHostsChanged, env_id)
    assert name in after_delete.hosts and second["domain"] not in after_delete.hosts


async def test_a_redirect_domain_is_routed_as_a_redirect_not_served(api, paid_application, settings, commands,
                                                                    verified_domain):
    env_id = paid_application["test_status"]["uuid"]
    name = f"old.{uuid.uuid4().hex[:8]}.example.com"
    added = await verified_domain(env_id, name, "REDIRECT")
    routed = await commands(EnvironmentHostsChanged, env_id)
    assert routed.redirect_hosts == [name] and name not in routed.hosts
    assert routed.hosts == [f"{paid_application['slug']}-stage.{settings.region_domain}"]

    # Made an alias, it is served instead.
    assert (await api.patch(f"/apps/v3/domains/{added['uuid']}/", json={"kind": "ALIAS"})).status_code == 200
    routed = await commands(EnvironmentHostsChanged, env_id)
    assert routed.redirect_hosts == [] and routed.hosts[1:] == [name]


async def test_the_https_redirect_is_routed_at_once_and_copied_with_the_environment(api, application, commands):
    env_id = application["test_status"]["uuid"]
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["https_redirect"] is False
    changed = await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": True})
    assert changed.status_code == 200 and changed.json()["https_redirect"] is True
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["https_redirect"] is True
    routed = await commands(EnvironmentHostsChanged, env_id)
    assert routed.https_redirect is True and routed.hosts[0].startswith(f"{application['slug']}-stage.")
    [event, *_] = await audit(api, env_id)
    assert event["action"] == "environment.update" and event["changes"] == {"https_redirect": True}

    # Sent unchanged, it routes nothing: the next command is the one turning it off.
    assert (await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": True})).status_code == 200
    assert (await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": False})).status_code == 200
    assert (await commands(EnvironmentHostsChanged, env_id)).https_redirect is False
    refused = await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": None})
    assert refused.status_code == 400 and "https_redirect" in refused.json()

    await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": True})
    copy = await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "secure"})
    assert copy.status_code == 201 and copy.json()["https_redirect"] is True


async def test_a_change_without_an_audit_event_is_refused_and_rolled_back(app, api, settings):
    """The guard behind the route walk: a mutating handler that forgets the trail fails."""
    from regio_controlpanel.api.deps import AuditDep, SessionDep
    from regio_controlpanel.db.models import Organisation

    marker = f"unaudited-{uuid.uuid4().hex[:6]}"

    @app.post("/test-only/unaudited", include_in_schema=False)
    async def forgetful(session: SessionDep, audit: AuditDep) -> dict:
        session.add(Organisation(name=marker))
        return {}

    try:
        import httpx
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                     base_url="http://cp.test", headers=api.headers) as client:
            assert (await client.post("/test-only/unaudited")).status_code == 500
    finally:
        app.router.routes.pop()
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        found = (await conn.execute(text("select count(*) from controlpanel.organisations where name = :n"),
                                    {"n": marker})).scalar()
    await engine.dispose()
    assert found == 0
