"""The web Control Panel over the ASGI app: signing in and out, CSRF, and that its pages
see and change exactly what the same user's API token would."""
import httpx
import pytest
from sqlalchemy import text

from regio_common.db import make_engine

from .web_client import PASSWORD, Browser, csrf_of, new_user


@pytest.fixture
async def browser(app, settings, seeded):
    """The seeded admin, signed in."""
    await new_user(settings, "admin@example.test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        signed_in = await b.sign_in("admin@example.test")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/web/", signed_in.text
        yield b


@pytest.fixture
async def outsider(app, settings):
    """A user with an organisation of their own, signed in."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        assert (await b.sign_in(await new_user(settings))).status_code == 303
        made = await b.submit("/web/organisations", "/web/organisations", {"name": "Outsiders"})
        assert made.status_code == 303
        yield b


async def test_pages_need_a_session_and_sign_in_sets_a_safe_cookie(app, settings, seeded):
    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        away = await client.get("/web/applications/new")
        assert away.status_code == 303 and away.headers["location"] == "/web/login?next=/web/applications/new"
        b = Browser(client)
        wrong = await b.sign_in(email, "not the password")
        assert wrong.status_code == 400 and "Wrong email or password" in wrong.text
        assert "regio_session" not in client.cookies
        signed_in = await b.sign_in(email)
        assert signed_in.status_code == 303
        cookie = next(h for h in signed_in.headers.get_list("set-cookie") if h.startswith("regio_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        assert (await client.get("/web/")).status_code == 200


async def test_over_https_the_session_cookie_is_secure(app, settings):
    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://cp.test") as client:
        signed_in = await Browser(client).sign_in(email)
        cookie = next(h for h in signed_in.headers.get_list("set-cookie") if h.startswith("regio_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie


async def test_the_sign_in_form_needs_its_own_token(app, settings):
    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        forged = await client.post("/web/login", data={"email": email, "password": PASSWORD, "csrf_token": "x"})
        assert forged.status_code == 403 and "regio_session" not in client.cookies


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(browser, api, application):
    env_id = application["test_status"]["uuid"]
    forged = await browser.client.post(f"/web/environments/{env_id}/variables",
                                       data={"name": "FORGED", "value": "1", "csrf_token": "guessed"})
    assert forged.status_code == 403
    listed = (await api.get("/apps/v3/environment-variables/", params={"environment": env_id})).json()
    assert "FORGED" not in {v["name"] for v in listed["results"]}


async def test_signing_out_ends_the_session(app, settings):
    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        await b.sign_in(email)
        cookie = client.cookies["regio_session"]
        out = await b.submit("/web/", "/web/logout", {})
        assert out.status_code == 303 and out.headers["location"] == "/web/login"
        client.cookies.set("regio_session", cookie)  # a copy kept by someone else is of no use either
        assert (await client.get("/web/")).status_code == 303


async def test_create_an_application_from_a_repository(browser, api, seeded, settings):
    new = await browser.get("/web/applications/new")
    assert "Business" in new.text and f"Local ({settings.region})" in new.text  # plans and regions to choose
    created = await browser.submit("/web/applications/new", "/web/applications", {
        "organisation": seeded["organisation"], "name": "Web Made", "slug": "", "branch": "develop",
        "repository_url": "file:///srv/git/web.git", "region": seeded["region"], "plan_group": ""})
    assert created.status_code == 303, created.text
    app_id = created.headers["location"].rsplit("/", 1)[1]
    made = (await api.get(f"/apps/v3/applications/{app_id}/")).json()
    assert made["slug"] == "web-made" and made["test_status"]["branch"] == "develop"
    page = await browser.get(f"/web/applications/{app_id}")
    assert "develop" in page.text and "not deployed" in page.text and made["test_status"]["site_url"] in page.text
    assert "Web Made" in (await browser.get("/web/")).text
    events = (await api.get("/iam/v3/audit-events/", params={"target": app_id})).json()["results"]
    assert [(e["action"], e["actor_email"]) for e in events] == [("application.create", "admin@example.test")]


async def test_bad_input_is_shown_on_a_page_and_nothing_is_made(browser, api, seeded, application):
    refused = await browser.submit("/web/applications/new", "/web/applications", {
        "organisation": seeded["organisation"], "name": "Again", "slug": application["slug"],
        "repository_url": "file:///srv/git/again.git", "region": seeded["region"]})
    assert refused.status_code == 409 and "already exists" in refused.text and "<html" in refused.text
    repos = (await api.get("/apps/v3/repositories/", params={"page_size": 100})).json()["results"]
    assert "file:///srv/git/again.git" not in {r["url"] for r in repos}


async def test_sensitive_values_never_reach_the_browser(browser, api, application):
    env_id = application["test_status"]["uuid"]
    page = f"/web/environments/{env_id}"
    added = await browser.submit(page, f"/web/environments/{env_id}/variables",
                                 {"name": "API_SECRET", "value": "s3cr3t-value", "is_sensitive": "true"})
    assert added.status_code == 303
    await browser.submit(page, f"/web/environments/{env_id}/variables", {"name": "GREETING", "value": "hello"})
    shown = await browser.get(page)
    assert "API_SECRET" in shown.text and "s3cr3t-value" not in shown.text and 'value="hello"' in shown.text
    variables = {v["name"]: v for v in (await api.get("/apps/v3/environment-variables/",
                                                      params={"environment": env_id})).json()["results"]}
    secret_id = variables["API_SECRET"]["uuid"]
    # Saving the blank form keeps the secret; it cannot be made plain from here either.
    assert (await browser.submit(page, f"/web/variables/{secret_id}", {"value": ""})).status_code == 303
    kept = (await api.get(f"/apps/v3/environment-variables/{secret_id}/")).json()
    assert kept["is_sensitive"] and kept["value"] is None
    assert (await browser.submit(page, f"/web/variables/{variables['GREETING']['uuid']}/delete", {})).status_code == 303
    assert "GREETING" not in (await browser.get(page)).text


async def test_scaling_stays_within_the_plan(browser, application):
    env_id = application["test_status"]["uuid"]
    refused = await browser.submit(f"/web/environments/{env_id}", f"/web/environments/{env_id}/scale",
                                   {"instances": "2", "memory_mb": "512"})
    assert refused.status_code == 400 and "at most 1 instance without a plan group" in refused.text


async def test_tokens_are_shown_once_and_revoked(browser, app):
    made = await browser.submit("/web/tokens", "/web/tokens", {"name": "from the web"})
    assert made.status_code == 201
    secret = made.text.split('data-new-token>')[1].split("<")[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test",
                                 headers={"Authorization": f"Token {secret}"}) as api:
        assert (await api.get("/iam/v3/me/")).json()["email"] == "admin@example.test"
        listed = await browser.get("/web/tokens")
        assert secret not in listed.text
        token_id = (await api.get("/iam/v3/tokens/")).json()["results"][0]["uuid"]
        assert (await browser.submit("/web/tokens", f"/web/tokens/{token_id}/revoke", {})).status_code == 303
        assert (await api.get("/iam/v3/me/")).status_code == 401


async def test_organisations_show_members_and_admins_add_them(browser, seeded):
    org = f"/web/organisations/{seeded['organisation']}"
    added = await browser.submit(org, f"{org}/members", {"email": "web-added@example.test", "role": "member"})
    assert added.status_code == 303
    page = await browser.get(org)
    assert "admin@example.test" in page.text and "web-added@example.test" in page.text and "owner" in page.text


async def test_another_organisation_sees_none_of_it(outsider, browser, application):
    app_id, env_id = application["uuid"], application["test_status"]["uuid"]
    assert application["slug"] not in (await outsider.get("/web/")).text
    for path in (f"/web/applications/{app_id}", f"/web/environments/{env_id}", f"/web/environments/{env_id}/logs"):
        assert (await outsider.get(path)).status_code == 404, path
    refused = await outsider.submit("/web/", f"/web/environments/{env_id}/variables", {"name": "X", "value": "1"})
    assert refused.status_code == 404
    deploy = await outsider.submit("/web/", f"/web/environments/{env_id}/deploy", {})
    assert deploy.status_code == 404


async def test_csrf_token_is_per_session(browser, outsider, application):
    env_id = application["test_status"]["uuid"]
    theirs = csrf_of(await outsider.get("/web/"))
    refused = await browser.client.post(f"/web/environments/{env_id}/variables",
                                        data={"name": "OTHER", "value": "1", "csrf_token": theirs})
    assert refused.status_code == 403


async def test_audit_events_name_the_web_user(browser, api, application, settings):
    env_id = application["test_status"]["uuid"]
    await browser.submit(f"/web/environments/{env_id}", f"/web/environments/{env_id}/variables",
                         {"name": "AUDITED", "value": "1"})
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        actions = set((await conn.execute(text(
            "select action from controlpanel.audit_events where actor_email = 'admin@example.test'"))).scalars())
    await engine.dispose()
    assert {"session.create", "environment_variable.create"} <= actions
