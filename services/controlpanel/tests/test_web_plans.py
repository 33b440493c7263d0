"""An application's plan on its web page: those who pay change it there and see prices;
members see the plan only."""
import httpx

from .test_web import browser  # noqa: F401
from .web_client import Browser, new_user


async def test_the_owner_changes_the_plan_from_the_application_page(browser, api, application):  # noqa: F811
    page = f"/web/applications/{application['uuid']}"
    shown = await browser.get(page)
    assert "Plan Developer (Developer)" in shown.text and "data-change-plan" in shown.text
    assert "99.00 EUR/month" in shown.text  # the Business plan's price, in the choices
    business = next(p for g in (await api.get("/billing/v3/application-plan-groups/")).json()["results"]
                    for p in g["plans"] if p["name"] == "Business")
    changed = await browser.submit(page, f"{page}/plan", {"plan": business["uuid"]})
    assert changed.status_code == 303, changed.text
    assert "Plan Business (Business)" in (await browser.get(page)).text
    history = (await api.get("/billing/v3/subscriptions/", params={"application": application["uuid"]})).json()
    assert [s["plan_name"] for s in history["results"]] == ["Business", "Developer"]


async def test_a_member_sees_the_plan_without_prices_and_cannot_change_it(app, api, settings, seeded, application):
    email = await new_user(settings)
    joined = await api.post("/iam/v3/memberships/", json={"organisation": seeded["organisation"], "email": email,
                                                          "role": "member"})
    assert joined.status_code == 201, joined.text
    page = f"/web/applications/{application['uuid']}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        member = Browser(client)
        assert (await member.sign_in(email)).status_code == 303
        shown = await member.get(page)
        assert "Plan Developer" in shown.text
        assert "data-change-plan" not in shown.text and "EUR" not in shown.text
        starter = next(p for g in (await api.get("/billing/v3/application-plan-groups/")).json()["results"]
                       for p in g["plans"] if p["name"] == "Starter")
        refused = await member.submit(page, f"{page}/plan", {"plan": starter["uuid"]})
        assert refused.status_code == 403
    history = (await api.get("/billing/v3/subscriptions/", params={"application": application["uuid"]})).json()
    assert [s["plan_name"] for s in history["results"]] == ["Developer"]
