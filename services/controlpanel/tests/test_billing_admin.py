"""The operator's billing command (regio_controlpanel.billing_admin, behind `regio billing`):
what it sets is what the API then shows and what invoices charge; what cannot be is refused
before anything changes."""
import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel import billing_admin
from regio_controlpanel.db.billing import PlanPrice
from regio_controlpanel.db.models import AuditEvent
from regio_controlpanel.services import invoices


async def admin(settings, *argv: str, now: datetime | None = None):
    return await billing_admin.run(settings, billing_admin.parser().parse_args(list(argv)), now=now)


async def plan_id(customer, name: str) -> str:
    groups = (await customer.get("/billing/v3/application-plan-groups/")).json()["results"]
    return next(p["uuid"] for g in groups for p in g["plans"] if p["name"] == name)


async def create_application(customer, seeded, plan: str) -> dict:
    groups = (await customer.get("/billing/v3/application-plan-groups/")).json()["results"]
    chosen = next(p for g in groups for p in g["plans"] if p["name"] == plan)
    repo = (await customer.post("/apps/v3/repositories/", json={"organisation": customer.organisation,
                                                                 "url": "file:///srv/git/hello.git"})).json()
    return await customer.post("/apps/v3/applications/", json={
        "name": "Shop", "slug": f"shop-{uuid.uuid4().hex[:8]}", "organisation": customer.organisation,
        "region": seeded["region"], "repository": repo["uuid"], "branch": "main",
        "plan_group": chosen["plan_group"], "plan": chosen["uuid"]})


async def test_an_organisation_s_currency_tax_and_prices_are_what_its_invoice_charges(
        settings, seeded, billing_clock, customer):
    # Starter in this region in CHF: 30.00 a month (the platform's EUR price stays as it is).
    starter = await plan_id(customer, "Starter")
    shown = await admin(settings, "plan-price", starter, "30.00", "--currency", "CHF", "--region", settings.region)
    assert {"currency": "CHF", "monthly": "30.00", "region": settings.region} in shown["prices"]
    plan = (await customer.get(f"/billing/v3/plans/{starter}/")).json()
    assert {"currency": "CHF", "region": seeded["region"], "monthly": "30.00"} in plan["prices"]
    assert {"currency": "EUR", "region": None, "monthly": "25.00"} in plan["prices"]
    set_again = await admin(settings, "plan-price", starter, "30.00", "--currency", "CHF", "--region", settings.region)
    assert [p for p in set_again["prices"] if p["currency"] == "CHF"] == [
        {"currency": "CHF", "monthly": "30.00", "region": settings.region}]  # changed in place, not added

    terms = await admin(settings, "organisation", customer.organisation, "--currency", "CHF", "--tax-rate", "0.077")
    assert (terms["currency"], terms["tax_rate"]) == ("CHF", "0.0770")
    details = (await customer.get(f"/billing/v3/organisations/{customer.organisation}/billing-details/")).json()
    assert (details["currency"], details["tax_rate"]) == ("CHF", "0.0770")

    # A day on Starter in October: 30.00 × 86,400 / 2,592,000 = 1.00; tax 0.077 -> 0.08; total 1.08 CHF.
    billing_clock.set(datetime(2026, 10, 5, tzinfo=UTC))
    created = await create_application(customer, seeded, "Starter")
    assert created.status_code == 201, created.text
    billing_clock.set(datetime(2026, 10, 6, tzinfo=UTC))
    assert (await customer.delete(f"/apps/v3/applications/{created.json()['uuid']}/")).status_code == 204

    with pytest.raises(billing_admin.Refused, match="from 2026-11-01 02:00"):
        await admin(settings, "close-month", "2026-10", now=datetime(2026, 11, 1, 1, tzinfo=UTC))
    closed = await admin(settings, "close-month", "2026-10", now=datetime(2026, 11, 1, 2, tzinfo=UTC))
    [ours] = [i for i in closed["invoices"] if i["organisation"] == customer.organisation]
    assert (ours["currency"], ours["total"]) == ("CHF", "1.08")
    again = await admin(settings, "close-month", "2026-10", now=datetime(2026, 11, 2, tzinfo=UTC))
    assert [i for i in again["invoices"] if i["organisation"] == customer.organisation] == [ours]  # made once
    invoice = (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})
               ).json()["results"][0]
    assert (invoice["number"], invoice["subtotal"], invoice["tax"], invoice["total"]) == \
        (ours["number"], "1.00", "0.08", "1.08")

    # The organisation's admins see what the operator changed.
    audit = (await customer.get("/iam/v3/audit-events/", params={"organisation": customer.organisation})).json()
    change = next(e for e in audit["results"] if e["action"] == "billing_terms.change")
    assert change["actor_email"] == "operator" and change["changes"]["tax_rate"] == "0.077"


async def test_a_quota_set_by_the_operator_refuses_and_none_lifts_it(settings, seeded, customer):
    terms = await admin(settings, "organisation", customer.organisation, "--max-applications", "0")
    assert terms["max_applications"] == "0"
    refused = await create_application(customer, seeded, "Starter")
    assert refused.status_code == 400 and "quota of 0 applications" in refused.text, refused.text
    assert (await admin(settings, "organisation", customer.organisation, "--max-applications", "none")
            )["max_applications"] is None
    assert (await create_application(customer, seeded, "Starter")).status_code == 201


@pytest.mark.parametrize("argv, said", [
    (["plan-price", "{starter}", "abc"], "not a number"),
    (["plan-price", "{starter}", "-1"], "must be from 0"),
    (["plan-price", "{starter}", "1.001"], "at most 2 decimals"),
    (["plan-price", "{starter}", "NaN"], "must be from 0"),
    (["plan-price", str(uuid.uuid4()), "1"], "no plan"),
    (["plan-price", "not-a-uuid", "1"], "no plan"),
    (["plan-price", "{starter}", "1", "--currency", "euro"], "ISO 4217"),
    (["plan-price", "{starter}", "1", "--region", "atlantis"], "no region"),
    (["usage-price", "minutes", "0.1"], "not one of instance"),
    (["organisation", "{organisation}", "--tax-rate", "1.5"], "below 1"),
    # XTS: ISO 4217's code for tests, which no plan has a price in: every plan would cost 0.
    (["organisation", "{organisation}", "--currency", "XTS"], "no plan has a price in XTS"),
    (["organisation", "{organisation}", "--max-instances", "-3"], "not a whole number"),
    (["organisation", str(uuid.uuid4()), "--max-instances", "3"], "no organisation"),
    (["close-month", "2026-13"], "not a month"),
])
async def test_what_cannot_be_is_refused_and_changes_nothing(settings, customer, argv, said):
    starter = await plan_id(customer, "Starter")
    argv = [a.format(starter=starter, organisation=customer.organisation) for a in argv]
    engine = make_engine(settings.database_url)
    counts = (select(func.count()).select_from(PlanPrice), select(func.count()).select_from(AuditEvent))
    async with make_sessionmaker(engine)() as session:
        before = [await session.scalar(q) for q in counts]
    with pytest.raises(billing_admin.Refused, match=said):
        await admin(settings, *argv)
    async with make_sessionmaker(engine)() as session:
        assert [await session.scalar(q) for q in counts] == before
    await engine.dispose()


def test_the_command_prints_the_price_list_as_json(settings):
    """As `regio billing plans` runs it: a process with the control panel's environment."""
    env = {**os.environ, "REGIO_CONTROLPANEL_DATABASE_URL": settings.database_url}
    result = subprocess.run([sys.executable, "-m", "regio_controlpanel.billing_admin", "plans"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {p["name"] for p in listed["plans"]} >= {"Developer", "Starter", "Business"}
    assert {p["kind"] for p in listed["usage_prices"]} >= {"instance", "requests", "build"}
    refused = subprocess.run([sys.executable, "-m", "regio_controlpanel.billing_admin", "usage-price", "x", "1"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not one of" in refused.stderr


async def test_close_month_goes_on_past_an_organisation_whose_invoice_fails_and_says_so(
        settings, seeded, billing_clock, customer, rival, monkeypatch, capsys):
    # July 2026, from the 10th on Starter: 25.00 × 22 days / 30 = 18.33 (no tax).
    billing_clock.set(datetime(2026, 7, 10, tzinfo=UTC))
    for client in (customer, rival):
        created = await create_application(client, seeded, "Starter")
        assert created.status_code == 201, created.text
    make = invoices.close_month

    async def failing(session, organisation_id, *args, **kwargs):
        if str(organisation_id) == customer.organisation:
            raise RuntimeError("the customer's invoice could not be made")
        return await make(session, organisation_id, *args, **kwargs)
    monkeypatch.setattr(invoices, "close_month", failing)

    after_july = datetime(2026, 8, 1, 2, tzinfo=UTC)
    closed = await admin(settings, "close-month", "2026-07", now=after_july)
    assert [(i["currency"], i["total"]) for i in closed["invoices"] if i["organisation"] == rival.organisation] == [
        ("EUR", "18.33")]
    assert customer.organisation not in {i["organisation"] for i in closed["invoices"]}
    assert {"organisation": customer.organisation, "error": "RuntimeError: the customer's invoice could not be made"
            } in closed["failed"]
    listed = (await customer.get("/billing/v3/invoices/", params={"organisation": customer.organisation})).json()
    assert listed["results"] == []

    # As `regio billing close-month` runs it: the JSON is printed, and it exits 1 saying who has none.
    monkeypatch.setenv("REGIO_CONTROLPANEL_DATABASE_URL", settings.database_url)
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(billing_admin.main, ["close-month", "2026-07"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert rival.organisation in {i["organisation"] for i in printed["invoices"]}
    assert customer.organisation in {f["organisation"] for f in printed["failed"]}
    assert "2026-07: no invoice made for" in err and customer.organisation in err

    # Once the fault is gone, the next close makes it.
    monkeypatch.setattr(invoices, "close_month", make)
    again = await admin(settings, "close-month", "2026-07", now=after_july)
    assert not [f for f in again["failed"] if f["organisation"] in (customer.organisation, rival.organisation)]
    assert [i["total"] for i in again["invoices"] if i["organisation"] == customer.organisation] == ["18.33"]
