"""A person's first hour in the web Control Panel, in Chromium against the running region:
sign in, create an application from a git repository, deploy it and watch the log arrive,
set a sensitive variable, scale to two instances, roll back, open the site; and a user of
another organisation sees none of it. Screenshots of the main pages go to
test-output/screenshots/."""
import re
import time
import uuid

import httpx
from playwright.sync_api import expect

PANEL = "http://127.0.0.1:8700"
DEPLOY_TIMEOUT_MS = 300_000


def sign_in(page, user) -> None:
    page.goto(f"{PANEL}/web/")
    expect(page).to_have_url(re.compile(r"/web/login"))
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    submit(page, "button[type=submit]")
    expect(page.locator("h1")).to_have_text("Applications")


def submit(page, selector: str) -> None:
    """Clicks a form's button and waits for the page the form leads to."""
    with page.expect_navigation():
        page.click(selector)


def wait_for_deployment(page) -> None:
    """On a deployment's page: its log grows while it runs, and the page says how it ended."""
    panel = page.locator("[data-deployment]")
    expect(page.locator("[data-log]")).to_contain_text("Deployment queued", timeout=30_000)
    expect(panel).to_have_attribute("data-state", re.compile("succeeded|failed"), timeout=DEPLOY_TIMEOUT_MS)
    log = page.locator("[data-log]").inner_text()
    assert panel.get_attribute("data-state") == "succeeded", log


def environment_card(page, slug: str):
    return page.locator(f"[data-environment={slug}]")


def site(page, url: str) -> str:
    page.goto(url)
    return page.locator("h1").inner_text()


def events_say(region, env_id: str, text: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    with region.client() as client:
        while time.monotonic() < deadline:
            events = client.get(f"/apps/v3/environments/{env_id}/events/").json()["results"]
            if any(text in e["message"] for e in events):
                return True
            time.sleep(1)
    return False


def test_from_sign_in_to_a_rolled_back_site(region, git_repo, chromium, screenshot, panel_admin, outsider):
    repo = git_repo("hello")
    slug = f"web-{uuid.uuid4().hex[:6]}"
    page = chromium.new_page()
    # The pages are sent with a Content-Security-Policy: anything of theirs it blocks is a bug.
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, panel_admin)

    # Create the application on the Business plan, so it may run two instances.
    page.click("text=New application")
    page.fill("#name", "Web hello")
    page.fill("#slug", slug)
    page.fill("#repository_url", repo.url)
    page.select_option("#plan_group", page.locator("#plan_group option", has_text="Business").get_attribute("value"))
    expect(page.locator("#region option")).not_to_have_count(0)
    screenshot(page, "02-new-application")
    submit(page, "text=Create application")
    expect(page.locator("h1")).to_contain_text("Web hello")
    app_id = page.url.rsplit("/", 1)[1]
    region.applications.append(app_id)
    # The group's first plan (Starter) scales only live: on the Business plan test scales too.
    page.select_option("#plan", page.locator("#plan option", has_text="Business: Business").get_attribute("value"))
    page.once("dialog", lambda dialog: dialog.accept())  # the form asks before changing the plan
    submit(page, "[data-change-plan] button[type=submit]")
    test_env = environment_card(page, "test")
    expect(test_env).to_contain_text("not deployed")
    site_url = test_env.locator("[data-site-url]").inner_text()
    assert site_url == f"http://{slug}-stage.{region.domain}:8780/"

    # Deploy, and watch the log arrive on the deployment's page.
    with page.expect_navigation():
        test_env.locator("[data-deploy]").click()
    wait_for_deployment(page)
    expect(page.locator("[data-log]")).to_contain_text("Deployment succeeded")
    screenshot(page, "04-deployment-log")
    first_deployment = page.url.rsplit("/", 1)[1]
    assert site(page, site_url) == "hello"

    # Variables: a plain one the page shows, a sensitive one that never comes back.
    page.goto(f"{PANEL}/web/applications/{app_id}")
    with page.expect_navigation():
        environment_card(page, "test").locator("h2 a").click()
    env_id = page.url.rsplit("/", 1)[1]
    for name, value, sensitive in (("GREETING", "Hello from the web", False), ("API_SECRET", "s3cr3t-from-web", True)):
        page.fill("#var-name", name)
        page.fill("#var-value", value)
        page.set_checked("#var-sensitive", sensitive)
        submit(page, "text=Add variable")
    page.reload()
    expect(page.locator("[data-variable=GREETING] [data-value]")).to_have_value("Hello from the web")
    expect(page.locator("[data-variable=API_SECRET] [data-value]")).to_have_value("")
    assert "s3cr3t-from-web" not in page.content()
    screenshot(page, "05-environment")

    # Deploy again: the new release carries the greeting.
    page.goto(f"{PANEL}/web/applications/{app_id}")
    with page.expect_navigation():
        environment_card(page, "test").locator("[data-deploy]").click()
    wait_for_deployment(page)
    assert site(page, site_url) == "Hello from the web"

    # Scale to two instances, within the plan.
    page.goto(f"{PANEL}/web/environments/{env_id}")
    page.fill("#instances", "2")
    submit(page, "[data-scale]")
    expect(page.locator("#instances")).to_have_value("2")
    assert events_say(region, env_id, "scaling from 1 to 2"), "the controller did not scale to two instances"
    page.goto(f"{PANEL}/web/applications/{app_id}")
    expect(environment_card(page, "test").locator("[data-instances]")).to_contain_text("2 ×")
    screenshot(page, "03-application")

    # Roll back to the first deployment's release, in one click.
    with page.expect_navigation():
        page.locator(f"[data-deployment-row='{first_deployment}'] [data-redeploy]").click()
    wait_for_deployment(page)
    expect(page.locator("[data-log]")).to_contain_text(f"redeploying the release of deployment {first_deployment}")
    assert site(page, site_url) == "hello"
    screenshot(page, "06-site-after-rollback")

    # The runtime log follows what the instances and the ingress say.
    page.goto(f"{PANEL}/web/environments/{env_id}/logs")
    expect(page.locator("[data-log]")).not_to_be_empty(timeout=30_000)
    screenshot(page, "07-runtime-logs")

    page.goto(f"{PANEL}/web/")
    expect(page.locator(f"[data-application={slug}]")).to_contain_text("serving")
    screenshot(page, "01-applications")
    page.goto(f"{PANEL}/web/organisations")
    screenshot(page, "08-organisations")
    page.goto(f"{PANEL}/web/tokens")
    page.fill("#token-name", "browser test")
    submit(page, "text=Create token")
    token = page.locator("[data-new-token]").inner_text()
    screenshot(page, "09-token-created")
    with httpx.Client(base_url=PANEL, headers={"Authorization": f"Token {token}"}) as api:
        assert api.get("/iam/v3/me/").json()["email"] == panel_admin.email
        submit(page, "[data-token='browser test'] button")
        assert api.get("/iam/v3/me/").status_code == 401
    submit(page, "text=Sign out")
    expect(page).to_have_url(re.compile(r"/web/login"))

    # Someone of another organisation sees none of it, not even by its address.
    other = chromium.new_context().new_page()
    sign_in(other, outsider)
    assert slug not in other.content()
    other.goto(f"{PANEL}/web/organisations")
    other.fill("#org-name", "Someone else's")
    submit(other, "text=Create organisation")
    other.goto(f"{PANEL}/web/")
    assert slug not in other.content()
    for path in (f"/web/applications/{app_id}", f"/web/environments/{env_id}", f"/web/deployments/{first_deployment}"):
        response = other.goto(f"{PANEL}{path}")
        assert response.status == 404, path
    screenshot(other, "10-other-organisation-not-found")
    assert not blocked, blocked
