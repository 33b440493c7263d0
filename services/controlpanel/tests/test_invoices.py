"""A month of one application, driven through the API with the billing clock set: created on
Starter, upgraded to Business and scaled, deleted; its instances' usage as the runner agent
reports it; the month closed in December into an invoice whose every figure is worked out
by hand below. Then who may read it."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import InstanceUsageMetered
from regio_controlpanel.db.billing import OrganisationBilling
from regio_controlpanel.db.models import User
from regio_controlpanel.services import invoices, meters, tokens

CREATED = datetime(2026, 11, 10, 12, tzinfo=UTC)
UPGRADED = datetime(2026, 11, 20, tzinfo=UTC)
DELETED = datetime(2026, 11, 25, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def clock(billing_clock):
    billing_clock.set(CREATED)
    return billing_clock


async def client_of(app, settings, owner: httpx.AsyncClient, role: str) -> httpx.AsyncClient:
    """A new member of the owner's organisation with ``role``, and a client acting as them."""
    added = await owner.post("/iam/v3/memberships/", json={"organisation": owner.organisation, "role": role,
                                                             "email": f"{role}-{uuid.uuid4().hex[:6]}@customer.test"})
    assert added.status_code == 201, added.text
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        token = await tokens.create(session, await session.get(User, uuid.UUID(added.json()["user"])))
    await engine.dispose()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test",
                             headers={"Authorization": f"Token {token}"})


async def runner_reports(app, settings, environment: str, instances: int, memory_mb: int, start: datetime,
                         end: datetime) -> None:
    """What a runner agent sends for ``instances`` containers running from ``start`` to ``end``:
    a segment per instance per metering period (an hour)."""
    ids = [uuid.uuid4() for _ in range(instances)]
    async with app.state.runtime.sessions() as session, session.begin():
        at = start
        while at < end:
            for instance_id in ids:
                await meters.on_instance_metered(session, InstanceUsageMetered(
                    instance_id=instance_id, environment_id=uuid.UUID(environment), runner="runner-1",
                    memory_mb=memory_mb, segment_start=at, segment_end=min(at + HOUR, end)), settings.region)
            at += HOUR


async def test_a_month_of_an_application_is_invoiced_to_the_cent(app, settings, seeded, clock, customer, stranger):
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(OrganisationBilling(organisation_id=uuid.UUID(customer.organisation), tax_rate=Decimal("0.081"),
                                        company_name="Customer GmbH", address="Hauptstrasse 1\n8000 Zürich"))
    await engine.dispose()
    groups = (await customer.get("/billing/v3/application-plan-groups/")).json()["results"]
    plans = {plan["name"]: plan for group in groups for plan in group["plans"]}
    repo = (await customer.post("/apps/v3/repositories/", json={"organisation": customer.organisation,
                                                                 "url": "file:///srv/git/hello.git"})).json()
    created = await customer.post("/apps/v3/applications/", json={
        "name": "Shop", "slug": f"shop-{uuid.uuid4().hex[:8]}", "organisation": customer.organisation,
        "region": seeded["region"], "repository": repo["uuid"], "branch": "main",
        "plan_group": plans["Starter"]["plan_group"], "plan": plans["Starter"]["uuid"]})
    assert created.status_code == 201, created.text
    application = created.json()
    environments = (await customer.get("/apps/v3/environments/", params={"application": application["uuid"]}))
    live = next(e for e in environments.json()["results"] if e["slug"] == "live")

    # Starter: one instance of 512 MB from the creation to the upgrade.
    await customer.patch(f"/apps/v3/environments/{live['uuid']}/", json={"memory_mb": 512})
    await runner_reports(app, settings, live["uuid"], 1, 512, CREATED, UPGRADED)
    clock.set(UPGRADED)
    upgraded = await customer.post("/billing/v3/subscriptions/", json={"application": application["uuid"],
                                                                       "plan": plans["Business"]["uuid"]})
    assert upgraded.status_code == 201, upgraded.text
    scaled = await customer.patch(f"/apps/v3/environments/{live['uuid']}/", json={"instances": 3, "memory_mb": 4096})
    assert scaled.status_code == 200, scaled.text
    await runner_reports(app, settings, live["uuid"], 3, 4096, UPGRADED, DELETED)

    # Before its deletion, the estimate of the month so far is what the invoice will say.
    clock.set(DELETED)
    estimate = await customer.get("/billing/v3/invoices/estimate/", params={"organisation": customer.organisation})
    assert estimate.status_code == 200, estimate.text
    assert (estimate.json()["subtotal"], estimate.json()["total"]) == ("31.30", "33.84")
    assert (await customer.delete(f"/apps/v3/applications/{application['uuid']}/")).status_code == 204

    # Not before the month's end and the meters' delay (2 h): December 1st, 01:59, nothing.
    delay = timedelta(seconds=settings.invoice_delay_seconds)
    clock.set(datetime(2026, 12, 1, 1, 59, tzinfo=UTC))
    made = await invoices.close_due(app.state.runtime.sessions, clock.now(), delay, settings.billing_currency)
    assert customer.organisation not in {str(i.organisation_id) for i in made}
    assert (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})
            ).json()["count"] == 0
    clock.set(datetime(2026, 12, 1, 2, tzinfo=UTC))
    await invoices.close_due(app.state.runtime.sessions, clock.now(), delay, settings.billing_currency)

    listed = (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})).json()
    [summary] = listed["results"]
    invoice = (await customer.get(f"/billing/v3/invoices/{summary['uuid']}/")).json()
    assert invoice["number"].startswith("R-202611-") and len(invoice["number"]) == len("R-202611-000001")
    assert (invoice["period_start"], invoice["period_end"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    lines = [(line["kind"], line["unit"], Decimal(line["quantity"]), Decimal(line["amount"]))
             for line in invoice["lines"]]
    assert lines == [
        # Starter, 2026-11-10 12:00 to 11-20 00:00: 9.5 days = 820,800 s = 228 h;
        # 25.00 × 820,800 / 2,592,000 = 7.91666… -> 7.92.
        ("subscription", "hours", Decimal(228), Decimal("7.92")),
        # Its usage: 1 × 0.5 GB × 228 h = 114 GB-hours, within Starter's 1440 × 820,800 / 2,592,000
        # = 456: no line.
        # Business, 11-20 00:00 to 11-25 06:00: 5.25 days = 453,600 s = 126 h;
        # 99.00 × 453,600 / 2,592,000 = 17.325 -> 17.33 (half-up).
        ("subscription", "hours", Decimal(126), Decimal("17.33")),
        # Its usage: 3 × 4 GB × 126 h = 1512 GB-hours; included 5760 × 453,600 / 2,592,000 = 1008;
        # 504 beyond at 0.012 = 6.048 -> 6.05.
        ("usage", "GB-hour", Decimal(504), Decimal("6.05")),
    ]
    assert [line["application_name"] for line in invoice["lines"]] == ["Shop"] * 3  # deleted, still named
    # 7.92 + 17.33 + 6.05 = 31.30; tax 31.30 × 0.081 = 2.5353 -> 2.54; total 33.84.
    assert (invoice["currency"], invoice["subtotal"], invoice["tax_rate"], invoice["tax"], invoice["total"]) == \
        ("EUR", "31.30", "0.0810", "2.54", "33.84")
    assert invoice["billing_details"]["company_name"] == "Customer GmbH"

    # Made once: closing it again (the operator's command, the loop's next round) gives the same.
    async with app.state.runtime.sessions() as session, session.begin():
        again = await invoices.close_month(session, uuid.UUID(customer.organisation), datetime(2026, 11, 1, tzinfo=UTC),
                                           clock.now(), default_currency="EUR")
    assert again.number == invoice["number"]
    await invoices.close_due(app.state.runtime.sessions, clock.now() + HOUR, delay, settings.billing_currency)
    assert (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})
            ).json()["count"] == 1

    printed = await customer.get(f"/billing/v3/invoices/{summary['uuid']}/print/")
    assert printed.status_code == 200 and printed.headers["content-type"].startswith("text/html")
    assert invoice["number"] in printed.text and "33.84" in printed.text and "Customer GmbH" in printed.text
    assert "Hauptstrasse 1" in printed.text

    # Who may read it: billing roles; a member is refused; another organisation finds nothing.
    billing = await client_of(app, settings, customer, "billing")
    member = await client_of(app, settings, customer, "member")
    try:
        assert (await billing.get(f"/billing/v3/invoices/{summary['uuid']}/")).json()["total"] == "33.84"
        for path in (f"/billing/v3/invoices/{summary['uuid']}/", f"/billing/v3/invoices/{summary['uuid']}/print/"):
            assert (await member.get(path)).status_code == 403
            assert (await stranger.get(path)).status_code == 404
        for path in ("/billing/v3/invoices/", "/billing/v3/invoices/estimate/"):
            assert (await member.get(path, params={"organisation": customer.organisation})).status_code == 403
            assert (await stranger.get(path, params={"organisation": customer.organisation})).status_code == 404
    finally:
        await billing.aclose()
        await member.aclose()


async def test_a_month_that_has_not_ended_is_not_invoiced(app, clock, customer):
    async with app.state.runtime.sessions() as session:
        with pytest.raises(invoices.NotClosable):
            await invoices.close_month(session, uuid.UUID(customer.organisation), datetime(2026, 11, 1, tzinfo=UTC),
                                       datetime(2026, 11, 30, 23, 59, tzinfo=UTC), default_currency="EUR")


async def test_the_control_panel_s_loop_closes_a_month_once_its_meters_had_their_delay(
        app, settings, seeded, clock, customer):
    """MonthCloser, as main.py runs it (reading the billing clock every round), a round a tenth
    of a second here: September's invoice appears once the clock passes October 1st 02:00."""
    await starter_application_made(customer, seeded, clock, datetime(2026, 9, 30, tzinfo=UTC))
    closer = invoices.MonthCloser(app.state.runtime.sessions, lambda: app.state.clock.now(),
                                  settings.invoice_delay_seconds, 0.1, settings.billing_currency)
    loop = asyncio.create_task(closer.run())
    try:
        async def invoiced() -> list[dict]:
            return (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})
                    ).json()["results"]

        clock.set(datetime(2026, 10, 1, 1, 59, tzinfo=UTC))
        await asyncio.sleep(0.5)
        assert await invoiced() == []
        clock.set(datetime(2026, 10, 1, 2, tzinfo=UTC))
        for _ in range(50):
            if made := await invoiced():
                break
            await asyncio.sleep(0.1)
        # A day of Starter: 25.00 × 86,400 / 2,592,000 = 0.8333… -> 0.83.
        assert [(i["period_start"], i["total"]) for i in made] == [("2026-09-01T00:00:00Z", "0.83")]
        await asyncio.sleep(0.3)  # more rounds: still one
        assert len(await invoiced()) == 1
    finally:
        loop.cancel()


async def test_a_month_missed_is_still_invoiced_after_the_next_one_is_due(app, settings, seeded, clock, customer):
    """The control panel was down (or the close failed) through October's due time: once
    November is due too, both are made, October first, each once."""
    await starter_application_made(customer, seeded, clock, datetime(2026, 10, 31, tzinfo=UTC))
    delay = timedelta(seconds=settings.invoice_delay_seconds)
    for _ in range(2):
        await invoices.close_due(app.state.runtime.sessions, datetime(2026, 12, 1, 3, tzinfo=UTC), delay,
                                 settings.billing_currency)
    made = (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})
            ).json()["results"]
    # October: one day of Starter, 0.83; November: 30 days, 25.00.
    assert sorted((i["period_start"], i["total"]) for i in made) == [
        ("2026-10-01T00:00:00Z", "0.83"), ("2026-11-01T00:00:00Z", "25.00")]


async def starter_application_made(customer, seeded, clock, at: datetime) -> dict:
    """An application of the customer on the Starter plan, made with the billing clock at ``at``."""
    groups = (await customer.get("/billing/v3/application-plan-groups/")).json()["results"]
    starter = next(p for g in groups for p in g["plans"] if p["name"] == "Starter")
    clock.set(at)
    repo = (await customer.post("/apps/v3/repositories/", json={"organisation": customer.organisation,
                                                                 "url": "file:///srv/git/hello.git"})).json()
    created = await customer.post("/apps/v3/applications/", json={
        "name": "Shop", "slug": f"shop-{uuid.uuid4().hex[:8]}", "organisation": customer.organisation,
        "region": seeded["region"], "repository": repo["uuid"], "branch": "main",
        "plan_group": starter["plan_group"], "plan": starter["uuid"]})
    assert created.status_code == 201, created.text
    return created.json()
