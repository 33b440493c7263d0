"""The web Control Panel over the ASGI app: signing in and out, CSRF, and that its pages
see and change exactly what the same user's API token would."""
import asyncio
import io
import re
import tarfile
import uuid

import httpx
import pytest
from sqlalchemy import text

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import EnvironmentHostsChanged
from regio_controlpanel.db.models import ServiceInstance
from regio_controlpanel.domain.service_instances import State
from regio_controlpanel.web import throttle

from .test_backups import db, finished, provisioned, servers, vault  # noqa: F401
from .test_resources import commands  # noqa: F401
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


async def test_password_guesses_are_throttled_by_email(app, settings):
    email, other = await new_user(settings), await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        for _ in range(5):
            assert (await b.sign_in(email.upper(), "a guess")).status_code == 400
        refused = await b.sign_in(email, PASSWORD)  # even the right password, for now
        assert refused.status_code == 429 and "try again in 15 minutes" in refused.text, refused.text
        assert "regio_session" not in client.cookies
        assert (await b.sign_in(other)).status_code == 303  # another email is not held up

    async with make_sessionmaker(make_engine(settings.database_url))() as session, session.begin():
        await session.execute(text("UPDATE controlpanel.sign_in_failures SET created_at = created_at - "
                                   "interval '15 minutes' WHERE email = :email"), {"email": email})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        assert (await Browser(client).sign_in(email)).status_code == 303  # the window has passed


async def test_parallel_guesses_are_counted_before_they_are_checked(app, settings):
    """A guesser who sends many guesses at once gets no more checked than one who waits."""
    email = await new_user(settings)

    async def guess(password: str) -> httpx.Response:
        """From a browser of its own, as a guesser with many clients would."""
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
            return await Browser(client).sign_in(email, password)

    answers = await asyncio.gather(*(guess(f"guess {i}") for i in range(20)))
    checked = [a for a in answers if "Wrong email or password" in a.text]
    assert len(checked) == throttle.FAILURES_ALLOWED, [a.status_code for a in answers]
    assert sorted(a.status_code for a in answers) == [400] * 5 + [429] * 15
    refused = await guess(PASSWORD)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert "regio_session" not in refused.cookies


async def test_changing_the_password_signs_out_the_users_other_browsers(app, settings):
    email = await new_user(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as here, \
            httpx.AsyncClient(transport=transport, base_url="http://cp.test") as elsewhere:
        mine, other = Browser(here), Browser(elsewhere)
        assert (await mine.sign_in(email)).status_code == 303 and (await other.sign_in(email)).status_code == 303

        wrong = await mine.submit("/web/account", "/web/account/password",
                                  {"current": "not it", "new": "a new secret", "repeated": "a new secret"})
        assert wrong.status_code == 400 and "current password is wrong" in wrong.text
        short = await mine.submit("/web/account", "/web/account/password",
                                  {"current": PASSWORD, "new": "short", "repeated": "short"})
        assert short.status_code == 400 and "at least 8 characters" in short.text
        changed = await mine.submit("/web/account", "/web/account/password",
                                    {"current": PASSWORD, "new": "a new secret", "repeated": "a new secret"})
        assert changed.status_code == 200 and "data-password-changed" in changed.text

        assert (await here.get("/web/")).status_code == 200  # this browser stays signed in
        assert (await elsewhere.get("/web/")).status_code == 303  # the other is signed out
        assert (await other.sign_in(email)).status_code == 400  # the old password is gone
        assert (await other.sign_in(email, "a new secret")).status_code == 303


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
    assert refused.status_code == 400 and "at most 1 instance on the Developer plan" in refused.text
    page = (await browser.get(f"/web/environments/{env_id}")).text
    assert "Developer plan: at most 1" in page and "sleeps when idle for 15 minutes" in page
    assert 'value="512"' not in page  # the plan's sizes only: 256 MB


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


async def test_a_custom_environment_is_added_as_a_copy_and_deleted(browser, api, application):
    app_page = f"/web/applications/{application['uuid']}"
    test_env = application["test_status"]["uuid"]
    assert (await api.post("/apps/v3/environment-variables/", json={
        "environment": test_env, "name": "FEATURE", "value": "on"})).status_code == 201
    added = await browser.submit(app_page, f"{app_page}/environments",
                                 {"slug": "demo", "branch": "demo-branch", "copy_from": test_env})
    assert added.status_code == 303
    demo = added.headers["location"].rsplit("/", 1)[1]
    shown = await api.get(f"/apps/v3/environments/{demo}/")
    assert shown.json()["slug"] == "demo" and shown.json()["branch"] == "demo-branch"
    copied = (await api.get("/apps/v3/environment-variables/", params={"environment": demo})).json()["results"]
    assert {(v["name"], v["value"]) for v in copied} >= {("FEATURE", "on")}
    assert 'data-environment="demo"' in (await browser.get(app_page)).text
    taken = await browser.submit(app_page, f"{app_page}/environments", {"slug": "demo", "copy_from": test_env})
    assert taken.status_code in (400, 409) and "<html" in taken.text

    assert "data-delete-environment" not in (await browser.get(f"/web/environments/{test_env}")).text
    gone = await browser.submit(f"/web/environments/{demo}", f"/web/environments/{demo}/delete", {})
    assert gone.status_code == 303 and gone.headers["location"] == app_page
    assert (await api.get(f"/apps/v3/environments/{demo}/")).status_code == 404


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


# --- members --------------------------------------------------------------------------------


def membership_of(page: httpx.Response, email: str) -> str:
    found = re.search(rf'data-member="{re.escape(email)}">.*?/web/memberships/([0-9a-f-]+)', page.text, re.S)
    assert found, f"no membership form for {email}"
    return found.group(1)


async def test_members_roles_change_and_members_go_by_the_apis_rules(app, settings, outsider, browser):
    """In an organisation of its own (the outsider is its only owner), so its owners are known."""
    made = await outsider.submit("/web/organisations", "/web/organisations", {"name": "Team"})
    org = made.headers["location"]
    colleague = await new_user(settings)
    assert (await outsider.submit(org, f"{org}/members", {"email": colleague, "role": "admin"})).status_code == 303
    page = await outsider.get(org)
    mine, theirs = membership_of(page, outsider_email(page)), membership_of(page, colleague)

    # The only owner stays one, and the message says why.
    kept = await outsider.submit(org, f"/web/memberships/{mine}", {"role": "member"})
    assert kept.status_code == 400 and "keeps at least one owner" in kept.text and "<html" in kept.text

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        admin = Browser(client)
        await admin.sign_in(colleague)
        # An admin changes members, but only an owner makes or removes owners.
        promoted = await admin.submit(org, f"/web/memberships/{theirs}", {"role": "owner"})
        assert promoted.status_code == 403 and "Only an owner can make or change owners." in promoted.text
        removed = await admin.submit(org, f"/web/memberships/{mine}/delete", {})
        assert removed.status_code == 403 and "Only an owner" in removed.text
        assert (await admin.submit(org, f"/web/memberships/{theirs}", {"role": "billing"})).status_code == 303
        assert re.search(rf'data-member="{re.escape(colleague)}">.*?value="billing" selected',
                         (await outsider.get(org)).text, re.S)
        # Now billing, the colleague no longer administers: no audit trail on their page.
        assert "data-audit-trail" not in (await admin.get(org)).text

    # An owner sees who changed what, newest first.
    trail = (await outsider.get(org)).text
    assert "data-audit-trail" in trail
    actions = re.findall(r'data-action="([^"]+)"', trail)
    assert actions == ["membership.update", "membership.create", "organisation.create"], actions
    newest = re.search(r'data-action="membership.update"><td>[^<]*</td><td>([^<]+)</td>', trail)
    assert newest.group(1) == colleague  # who made the last change

    # Another organisation's user does not find the membership at all.
    assert (await browser.submit("/web/", f"/web/memberships/{theirs}", {"role": "owner"})).status_code == 404
    assert (await browser.submit("/web/", f"/web/memberships/{theirs}/delete", {})).status_code == 404

    assert (await outsider.submit(org, f"/web/memberships/{theirs}", {"role": "owner"})).status_code == 303
    # Now two owners: the first may step down, then leaves; the page goes back to their organisations.
    assert (await outsider.submit(org, f"/web/memberships/{mine}", {"role": "admin"})).status_code == 303
    left = await outsider.submit(org, f"/web/memberships/{mine}/delete", {})
    assert left.status_code == 303 and left.headers["location"] == "/web/organisations"
    assert (await outsider.get(org)).status_code == 404


def outsider_email(page: httpx.Response) -> str:
    return re.search(r'<a class="me" href="/web/account">([^<]+)</a>', page.text).group(1)


# --- service instances ----------------------------------------------------------------------


async def set_state(settings, instance_id: str, state: State) -> None:
    """As a deployment's provisioning step leaves it (without a database behind it here)."""
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        (await session.get(ServiceInstance, uuid.UUID(instance_id))).state = state
    await engine.dispose()


async def test_service_instances_are_detached_attached_and_removed(browser, outsider, api, application, settings):
    env_id = application["test_status"]["uuid"]
    page = f"/web/environments/{env_id}"
    offered = (await api.get("/apps/v3/services/", params={"website": application["uuid"]})).json()["results"][0]
    assert (await browser.submit(page, f"{page}/services", {"service": offered["uuid"], "prefix": "MAIN"})
            ).status_code == 303
    instance = (await api.get("/apps/v3/service-instances/", params={"environment": env_id})).json()["results"][0]
    path = f"/web/service-instances/{instance['uuid']}"
    shown = (await browser.get(page)).text
    assert "NEW" in shown and f"{path}/delete" in shown and "data-confirm=" in shown and f"{path}/detach" not in shown

    # The service layer's refusal is shown on a page, not a 500.
    refused = await browser.submit(page, f"{path}/detach", {})
    assert refused.status_code == 409 and "Only an attached service instance can be detached" in refused.text

    await set_state(settings, instance["uuid"], State.ATTACHED)
    assert f"{path}/detach" in (await browser.get(page)).text
    assert (await outsider.submit("/web/", f"{path}/detach", {})).status_code == 404
    assert (await outsider.submit("/web/", f"{path}/delete", {})).status_code == 404
    still = await browser.submit(page, f"{path}/delete", {})
    assert still.status_code == 409 and "<html" in still.text
    assert (await browser.submit(page, f"{path}/detach", {})).status_code == 303
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).json()["service_status"] == "DETACHED"
    assert (await browser.submit(page, f"{path}/attach", {})).status_code == 303
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).json()["service_status"] == "ATTACHED"
    assert (await browser.submit(page, f"{path}/detach", {})).status_code == 303
    gone = await browser.submit(page, f"{path}/delete", {})
    assert gone.status_code == 303 and gone.headers["location"].endswith("#services")
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).status_code == 404
    events = (await api.get("/iam/v3/audit-events/", params={"target": instance["uuid"]})).json()["results"]
    assert [e["action"] for e in events] == ["service_instance.delete", "service_instance.detach",
                                             "service_instance.attach", "service_instance.detach",
                                             "service_instance.create"]
    assert events[2]["summary"].startswith("Attached ") and f"({instance['prefix']}) to " in events[2]["summary"]


# --- settings -------------------------------------------------------------------------------


async def test_environment_settings_change_and_the_https_redirect_is_routed_at_once(
        browser, outsider, api, application, commands):  # noqa: F811
    env_id = application["test_status"]["uuid"]
    page = f"/web/environments/{env_id}"
    saved = await browser.submit(page, f"{page}/settings",
                                 {"branch": "release", "health_check_path": "/healthz", "https_redirect": "true"})
    assert saved.status_code == 303
    env = (await api.get(f"/apps/v3/environments/{env_id}/")).json()
    assert (env["branch"], env["health_check_path"], env["https_redirect"]) == ("release", "/healthz", True)
    assert (await commands(EnvironmentHostsChanged, env_id)).https_redirect is True
    shown = (await browser.get(page)).text
    assert 'value="release"' in shown and 'value="/healthz"' in shown and "checked" in shown
    [event, *_] = (await api.get("/iam/v3/audit-events/", params={"target": env_id})).json()["results"]
    assert event["action"] == "environment.update" and event["changes"] == {
        "branch": "release", "health_check_path": "/healthz", "https_redirect": True}

    # Left unticked, the redirect goes off; bad input is shown and changes nothing.
    assert (await browser.submit(page, f"{page}/settings", {"branch": "release", "health_check_path": "/healthz"})
            ).status_code == 303
    assert (await commands(EnvironmentHostsChanged, env_id)).https_redirect is False
    bad = await browser.submit(page, f"{page}/settings", {"branch": "main", "health_check_path": "healthz"})
    assert bad.status_code == 400 and "health_check_path" in bad.text
    assert (await browser.submit(page, f"{page}/settings", {"branch": "release", "health_check_path": "/healthz",
                                                           "port": "8080"})).status_code == 303
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["port"] == 8080
    assert 'name="port" min="1" max="65535" value="8080"' in (await browser.get(page)).text
    wrong_port = await browser.submit(page, f"{page}/settings", {"branch": "main", "health_check_path": "/",
                                                                 "port": "70000"})
    assert wrong_port.status_code == 400 and "port" in wrong_port.text
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["port"] == 8080
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["branch"] == "release"
    refused = await outsider.submit("/web/", f"{page}/settings", {"branch": "x", "health_check_path": "/"})
    assert refused.status_code == 404


async def test_settings_take_the_right_to_manage_as_in_the_api(app, settings, browser, seeded, application):
    env_id = application["test_status"]["uuid"]
    email = await new_user(settings)
    org = f"/web/organisations/{seeded['organisation']}"
    assert (await browser.submit(org, f"{org}/members", {"email": email, "role": "member"})).status_code == 303
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        member = Browser(client)
        await member.sign_in(email)
        page = f"/web/environments/{env_id}"
        refused = await member.submit(page, f"{page}/settings", {"branch": "theirs", "health_check_path": "/"})
        assert refused.status_code == 403 and "does not allow" in refused.text


# --- backups --------------------------------------------------------------------------------


async def test_backups_are_taken_restored_and_downloaded_from_the_page(
        browser, outsider, api, application, db, vault, servers):  # noqa: F811
    env_id = application["test_status"]["uuid"]
    page = f"/web/environments/{env_id}"
    nothing = await browser.submit(page, f"{page}/backups", {})
    assert nothing.status_code == 400 and "no provisioned service instance to back up" in nothing.text

    data = await provisioned(api, db, vault, servers, env_id)
    await data.write("kept")
    taken = await browser.submit(page, f"{page}/backups", {})
    assert taken.status_code == 303 and taken.headers["location"].endswith("#backups")
    [listed] = (await api.get("/apps/v3/backups/", params={"environment": env_id})).json()["results"]
    backup = await finished(api, f"/apps/v3/backups/{listed['uuid']}/")
    assert backup["success"] == "SUCCESS" and backup["trigger"] == "MANUAL"
    shown = (await browser.get(page)).text
    assert "COMPLETED · SUCCESS" in shown and "database DEFAULT" in shown
    path = f"/web/backups/{backup['uuid']}"
    assert f"{path}/restore" in shown and f"{path}/download" in shown

    for action in (f"{page}/backups", f"{path}/restore", f"{path}/download"):
        assert (await outsider.submit("/web/", action, {})).status_code == 404, action

    link = await browser.submit(page, f"{path}/download", {})
    assert link.status_code == 303 and link.headers["location"].startswith("/downloads/")
    archive = await browser.get(link.headers["location"])
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert "database-DEFAULT.dump" in tar.getnames()

    await data.write("after the backup")
    restoring = await browser.submit(page, f"{path}/restore", {})
    assert restoring.status_code == 303
    [event, *_] = (await api.get("/iam/v3/audit-events/", params={"action": "backup_restore.create"})).json()["results"]
    assert event["actor_email"] == "admin@example.test" and event["changes"]["backup"] == backup["uuid"]
    restored = await finished(api, f"/apps/v3/backup-restores/{event['target']}/")
    assert restored["success"] == "SUCCESS", restored
    assert await data.rows() == ["kept"]

    # Into another environment of the application, chosen on the page.
    live_id = application["live_status"]["uuid"]
    live = await provisioned(api, db, vault, servers, live_id)
    await live.write("live's own")
    assert f'<option value="{live_id}"' in (await browser.get(page)).text
    assert (await browser.submit(page, f"{path}/restore", {"environment": live_id})).status_code == 303
    [event, *_] = (await api.get("/iam/v3/audit-events/", params={"action": "backup_restore.create"})).json()["results"]
    assert event["changes"]["environment"] == live_id
    assert (await finished(api, f"/apps/v3/backup-restores/{event['target']}/"))["success"] == "SUCCESS"
    assert await live.rows() == ["kept"]
