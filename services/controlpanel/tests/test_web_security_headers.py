"""The web pages tell the browser to run no script but the panel's own, to submit forms
only to it, and never to show it in another site's frame; and the pages need nothing more."""
import re
from pathlib import Path

import httpx

import regio_controlpanel.web

from .test_web import browser  # noqa: F401

TEMPLATES = Path(regio_controlpanel.web.__file__).parent / "templates"
# What the policy would block (so a page using it would break) or what would need 'unsafe-inline'.
INLINE = {
    "a script in the page": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "a style attribute": re.compile(r"\sstyle\s*=", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "a javascript: address": re.compile(r"javascript:", re.I),
}


def assert_protected(response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives.get("script-src") == "'self'", (response.url, policy)
    assert directives.get("style-src") == "'self'" and directives.get("frame-ancestors") == "'none'", policy
    assert directives.get("form-action") == "'self'" and directives.get("object-src") == "'none'", policy
    assert response.headers.get("x-frame-options") == "DENY", response.url
    assert response.headers.get("x-content-type-options") == "nosniff", response.url
    assert response.headers.get("referrer-policy") == "same-origin", response.url


def assert_nothing_inline(where: str, html: str) -> None:
    for what, pattern in INLINE.items():
        found = pattern.search(html)
        assert found is None, f"{where} has {what}, which the policy blocks: {html[found.start():found.start() + 80]}"


def test_no_template_needs_inline_script_or_style():
    templates = sorted(TEMPLATES.glob("*.html"))
    assert len(templates) > 10
    for template in templates:
        assert_nothing_inline(template.name, template.read_text())


async def test_every_page_is_sent_with_the_policy(app, browser, application, seeded):  # noqa: F811
    env_id = application["test_status"]["uuid"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as anonymous:
        for response in (await anonymous.get("/web/login"), await anonymous.get("/"),
                         await anonymous.get("/web/static/live.js"), await anonymous.get("/web/applications/new")):
            assert_protected(response)
    pages = [f"/web/applications/{application['uuid']}", f"/web/environments/{env_id}", "/web/",
             "/web/applications/new", f"/web/organisations/{seeded['organisation']}", "/web/tokens",
             "/web/account", "/web/organisations", f"/web/environments/{env_id}/logs",
             "/web/environments/00000000-0000-0000-0000-000000000000"]
    for path in pages:
        response = await browser.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        assert_protected(response)
        assert_nothing_inline(path, response.text)
    # The forms that asked before deleting still ask, through the panel's own script.
    organisation = await browser.get(f"/web/organisations/{seeded['organisation']}")
    assert "data-confirm=" in organisation.text
    script = (await browser.get("/web/static/live.js")).text
    assert "form[data-confirm]" in script and "a[data-back]" in script


async def test_the_api_is_left_as_it_was(api):
    """The policy is the pages': API answers are JSON, read by clients, not shown by browsers."""
    assert "content-security-policy" not in (await api.get("/iam/v3/me/")).headers
