"""The web organisation billing page: the running month's estimate and the invoices made, each
printable, for owners, admins and billing members only (a member: 403; another
organisation's user: 404), and linked from the organisation's page for them alone."""
import uuid
from datetime import UTC, datetime

import httpx

from regio_controlpanel.services import invoices

from .web_client import Browser, new_user


async def signed_in_member(app, settings, owner: httpx.AsyncClient, role: str | None) -> Browser:
    """A person signed in to the web, a ``role`` of the owner's organisation (None: of none)."""
    email = await new_user(settings, f"web-{role}-{uuid.uuid4().hex[:6]}@customer.test")
    if role is not None:
        added = await owner.post("/iam/v3/memberships/", json={"organisation": owner.organisation, "email": email,
                                                               "role": role})
        assert added.status_code == 201, added.text
    browser = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test"))
    assert (await browser.sign_in(email)).status_code == 303
    return browser


async def test_the_billing_page_shows_the_estimate_and_the_printable_invoices_to_billing_roles(
        app, settings, seeded, billing_clock, customer):
    groups = (await customer.get("/billing/v3/application-plan-groups/")).json()["results"]
    starter = next(p for g in groups for p in g["plans"] if p["name"] == "Starter")
    repo = (await customer.post("/apps/v3/repositories/", json={"organisation": customer.organisation,
                                                                 "url": "file:///srv/git/hello.git"})).json()
    billing_clock.set(datetime(2026, 9, 16, tzinfo=UTC))
    made = await customer.post("/apps/v3/applications/", json={
        "name": "Shop", "slug": f"shop-{uuid.uuid4().hex[:8]}", "organisation": customer.organisation,
        "region": seeded["region"], "repository": repo["uuid"], "branch": "main",
        "plan_group": starter["plan_group"], "plan": starter["uuid"]})
    assert made.status_code == 201, made.text
    # September: 15 days of Starter, 25.00 × 1,296,000 / 2,592,000 = 12.50. October so far, 3 hours:
    # 25.00 × 10,800 / 2,592,000 = 0.104… -> 0.10.
    billing_clock.set(datetime(2026, 10, 1, 3, tzinfo=UTC))
    async with app.state.runtime.sessions() as session, session.begin():
        invoice = await invoices.close_month(session, uuid.UUID(customer.organisation),
                                             datetime(2026, 9, 1, tzinfo=UTC), billing_clock.now(),
                                             default_currency="EUR")
    page_path = f"/web/organisations/{customer.organisation}/billing"

    billing = await signed_in_member(app, settings, customer, "billing")
    member = await signed_in_member(app, settings, customer, "member")
    outsider = await signed_in_member(app, settings, customer, None)
    try:
        organisation = await billing.get(f"/web/organisations/{customer.organisation}")
        assert f'href="{page_path}"' in organisation.text
        page = await billing.get(page_path)
        assert page.status_code == 200, page.text
        assert f'data-invoice="{invoice.number}"' in page.text and "12.50 EUR" in page.text
        assert 'data-total><strong>0.10</strong>' in page.text
        printed = await billing.get(f"/web/invoices/{invoice.id}")
        assert printed.status_code == 200 and invoice.number in printed.text and "12.50" in printed.text
        assert f'href="/web/invoices/{invoice.id}"' in page.text
        # Styled from a file: the pages' Content-Security-Policy refuses inline style.
        assert "<style" not in printed.text and "style-src 'self'" in printed.headers["content-security-policy"]
        assert (await billing.get("/web/static/invoice.css")).status_code == 200

        assert f'href="{page_path}"' not in (await member.get(f"/web/organisations/{customer.organisation}")).text
        assert (await member.get(page_path)).status_code == 403
        assert (await member.get(f"/web/invoices/{invoice.id}")).status_code == 403
        assert (await outsider.get(page_path)).status_code == 404
        assert (await outsider.get(f"/web/invoices/{invoice.id}")).status_code == 404
        assert invoice.number not in (await outsider.get(f"/web/invoices/{invoice.id}")).text
    finally:
        for browser in (billing, member, outsider):
            await browser.client.aclose()
