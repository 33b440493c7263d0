"""The public API as a user meets it: identity, applications, variables, errors, tenancy."""
import asyncio
import uuid

from sqlalchemy import text

from regio_common.db import make_engine


async def test_requests_without_a_valid_token_are_refused(api):
    assert (await api.get("/iam/v3/me/", headers={"Authorization": ""})).status_code == 401
    response = await api.get("/iam/v3/me/", headers={"Authorization": "Token not-a-token"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


async def test_me_and_organisations_with_and_without_trailing_slash(api, seeded):
    me = (await api.get("/iam/v3/me/")).json()
    assert me["email"] == "admin@example.test"
    # The divio client sends a JSON body with every GET, and asks some paths without the slash.
    orgs = (await api.request("GET", "/iam/v3/organisations", json={})).json()
    assert orgs["count"] == 1 and orgs["results"][0]["uuid"] == seeded["organisation"]
    assert {"next", "previous"} <= orgs.keys()


async def test_an_application_starts_with_test_and_live_on_default_domains(api, application, settings):
    slug = application["slug"]
    assert application["test_status"]["site_url"] == f"http://{slug}-stage.{settings.region_domain}:8780/"
    assert application["live_status"]["site_url"] == f"http://{slug}.{settings.region_domain}:8780/"
    envs = (await api.get("/apps/v3/environments/", params={"application": application["uuid"], "slug": "test"})).json()
    assert envs["count"] == 1
    env = envs["results"][0]
    assert env["branch"] == "main" and env["last_finished_deployment"] is None
    assert env["test_status"]["site_url"].startswith(f"http://{slug}-stage.")
    found = (await api.get("/apps/v3/applications/", params={"slug": slug})).json()
    assert [a["uuid"] for a in found["results"]] == [application["uuid"]]


async def test_bad_input_names_the_field_and_the_reason(api, seeded):
    response = await api.post("/apps/v3/applications/", json={"slug": "Not A Slug!", "organisation": seeded["organisation"]})
    assert response.status_code == 400
    assert response.json()["name"] == ["This field is required."]
    response = await api.post("/apps/v3/applications/", json={
        "name": "x", "slug": "Not_A_Slug", "organisation": seeded["organisation"]})
    assert response.status_code == 400 and "slug" in response.json()
    response = await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"], "url": "not a url"})
    assert response.status_code == 400 and "url" in response.json()
    response = await api.post("/apps/v3/deployments/", json={"environment": str(uuid.uuid4())})
    assert response.status_code == 400 and response.json() == {"environment": ["Environment not found."]}
    response = await api.post("/apps/v3/applications/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "non_field_errors" in response.json()


async def test_a_duplicate_slug_is_a_conflict_naming_the_field(api, application, seeded):
    response = await api.post("/apps/v3/applications/", json={
        "name": "Again", "slug": application["slug"], "organisation": seeded["organisation"]})
    assert response.status_code == 409
    assert response.json() == {"slug": ["An application with this slug already exists."]}


async def test_sensitive_variables_are_masked_and_encrypted_at_rest(api, application, settings):
    env_id = application["test_status"]["uuid"]
    for name, value, sensitive in (("GREETING", "hello world", False), ("API_SECRET", "s3cr3t-value", True)):
        response = await api.post("/apps/v3/environment-variables/", json={
            "environment": env_id, "name": name, "value": value, "is_sensitive": sensitive})
        assert response.status_code == 201, response.text
    listed = {v["name"]: v for v in (await api.get("/apps/v3/environment-variables/", params={"environment": env_id})).json()["results"]}
    assert listed["GREETING"]["value"] == "hello world"
    assert listed["API_SECRET"]["value"] is None and listed["API_SECRET"]["is_sensitive"]
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        stored = (await conn.execute(text(
            "select coalesce(value, '') || coalesce(value_encrypted, '') from controlpanel.environment_variables "
            "where name = 'API_SECRET'"))).scalar_one()
    await engine.dispose()
    assert "s3cr3t-value" not in stored
    duplicate = await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "GREETING", "value": "again"})
    assert duplicate.status_code == 409


async def test_another_organisation_sees_nothing(api, stranger, application):
    assert (await stranger.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 404
    assert (await stranger.get("/apps/v3/applications/")).json()["count"] == 0
    env_id = application["test_status"]["uuid"]
    assert (await stranger.get(f"/apps/v3/environments/{env_id}/")).status_code == 404
    response = await stranger.post("/apps/v3/deployments/", json={"environment": env_id})
    assert response.status_code == 400 and response.json() == {"environment": ["Environment not found."]}
    response = await stranger.post("/apps/v3/applications/", json={
        "name": "x", "slug": f"x-{uuid.uuid4().hex[:6]}", "organisation": application["organisation"]})
    assert response.status_code == 400 and response.json() == {"organisation": ["Organisation not found."]}


async def test_pagination(api, seeded):
    for _ in range(3):
        await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"], "url": "git://example.test/r.git"})
    first = (await api.get("/apps/v3/repositories/", params={"page_size": 2})).json()
    assert len(first["results"]) == 2 and first["next"] and first["previous"] is None
    second = (await api.get(first["next"])).json()
    assert second["previous"] and {r["uuid"] for r in second["results"]}.isdisjoint({r["uuid"] for r in first["results"]})


async def test_values_the_database_cannot_take_are_a_400_not_a_500(api):
    response = await api.get("/apps/v3/environments/", params={"slug": "\x00J"})
    assert response.status_code == 400 and "non_field_errors" in response.json()
    response = await api.get("/iam/v3/organisations/", params={"page": 10**20})
    assert response.status_code == 400 and "page" in response.json()


async def test_an_unknown_field_is_named(api, seeded):
    response = await api.post("/apps/v3/repositories/", json={
        "organisation": seeded["organisation"], "url": "git://example.test/r.git", "colour": "blue"})
    assert response.status_code == 400 and response.json() == {"colour": ["Unknown field."]}


async def test_a_token_is_shown_once_listed_without_its_secret_and_revoked_at_once(api):
    created = await api.post("/iam/v3/tokens/", json={"name": "ci"})
    assert created.status_code == 201
    secret = created.json()["token"]
    headers = {"Authorization": f"Token {secret}"}
    assert (await api.get("/iam/v3/me/", headers=headers)).status_code == 200
    listed = (await api.get("/iam/v3/tokens/")).json()["results"]
    mine = next(t for t in listed if t["uuid"] == created.json()["uuid"])
    assert "token" not in mine and mine["last_used_at"] is not None
    revoked = await api.delete(f"/iam/v3/tokens/{mine['uuid']}/")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await api.get("/iam/v3/me/", headers=headers)).status_code == 401


async def test_a_long_request_does_not_hold_up_the_same_tokens_other_requests(api, settings):
    """A request records the token's use (once a minute) in its own transaction, which may stay
    open for seconds (a DNS look-up of a custom domain's challenge): the token's other requests
    due to record it too must not wait for that one's row lock."""
    created = (await api.post("/iam/v3/tokens/", json={"name": "busy"})).json()
    headers = {"Authorization": f"Token {created['token']}"}
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as other_request:
            # The long request: it recorded the use and holds the row until it ends.
            await other_request.execute(text(
                "UPDATE controlpanel.api_tokens SET last_used_at = now() - interval '1 hour' WHERE id = :id"),
                {"id": created["uuid"]})
            async with asyncio.timeout(30):  # would wait for the lock as long as it is held
                answered = await api.get("/iam/v3/me/", headers=headers)
            assert answered.status_code == 200
            await other_request.rollback()
    finally:
        await engine.dispose()


async def test_another_users_token_cannot_be_revoked(api, stranger):
    created = (await api.post("/iam/v3/tokens/", json={"name": "mine"})).json()
    assert (await stranger.delete(f"/iam/v3/tokens/{created['uuid']}/")).status_code == 404
