"""An application's plan over time: one subscription at a time, changed only by those who
pay (owners, admins, billing members), recorded as a history without gaps, with prices
shown only to them, and kept after the application is deleted."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.billing import OrganisationBilling, Plan, Subscription
from regio_controlpanel.db.models import PlanGroup


async def plans_by_name(api) -> dict[str, dict]:
    groups = (await api.get("/billing/v3/application-plan-groups/")).json()["results"]
    return {plan["name"]: plan for group in groups for plan in group["plans"]}


async def history(client, application: dict) -> list[dict]:
    response = await client.get("/billing/v3/subscriptions/", params={"application": application["uuid"]})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def test_a_new_application_is_on_the_free_plan_from_its_creation(api, application):
    [subscription] = await history(api, application)
    assert subscription["plan_name"] == "Developer" and subscription["ended_at"] is None
    started = datetime.fromisoformat(subscription["started_at"])
    assert abs(started - datetime.fromisoformat(application["created_at"])) < timedelta(seconds=5)
    # The owner sees what it costs.
    assert (subscription["monthly"], subscription["currency"]) == ("0.00", "EUR")
    free_group = next(g for g in (await api.get("/billing/v3/application-plan-groups/")).json()["results"]
                      if g["is_free"])
    assert application["plan_group"] == free_group["uuid"]


async def test_an_upgrade_ends_one_subscription_where_the_next_starts_and_is_audited(api, application):
    plans = await plans_by_name(api)
    response = await api.post("/billing/v3/subscriptions/",
                              json={"application": application["uuid"], "plan": plans["Starter"]["uuid"]})
    assert response.status_code == 201, response.text
    assert (response.json()["plan_name"], response.json()["monthly"]) == ("Starter", "25.00")
    newest, first = await history(api, application)
    assert newest["plan_name"] == "Starter" and newest["ended_at"] is None
    assert first["plan_name"] == "Developer" and first["ended_at"] == newest["started_at"]
    assert (await api.get(f"/apps/v3/applications/{application['uuid']}/")).json()["plan_group"] == \
        plans["Starter"]["plan_group"]
    audit = (await api.get("/iam/v3/audit-events/", params={"organisation": application["organisation"]})).json()
    change = next(e for e in audit["results"] if e["action"] == "subscription.change")
    assert change["target"] == application["uuid"] and change["changes"]["plan"] == plans["Starter"]["uuid"]

    again = await api.post("/billing/v3/subscriptions/",
                           json={"application": application["uuid"], "plan": plans["Starter"]["uuid"]})
    assert again.status_code == 409 and "already" in again.json()["plan"][0]


async def test_members_see_the_plan_but_no_price_and_cannot_change_it(api, member, application):
    plans = await plans_by_name(api)
    dev = await member("member")
    refused = await dev.post("/billing/v3/subscriptions/",
                             json={"application": application["uuid"], "plan": plans["Business"]["uuid"]})
    assert refused.status_code == 403, refused.text
    [seen] = await history(dev, application)
    assert seen["plan_name"] == "Developer"
    assert "monthly" not in seen and "currency" not in seen
    listed = (await dev.get("/billing/v3/plans/")).json()["results"]
    assert listed and all("prices" not in plan for plan in listed)
    assert all("prices" in plan for plan in (await api.get("/billing/v3/plans/")).json()["results"])
    group = (await dev.get(f"/billing/v3/application-plan-groups/{plans['Business']['plan_group']}/")).json()
    assert group["plans"] and all("prices" not in plan for plan in group["plans"])

    # A billing member views no application, but changes its plan and sees the price.
    billing = await member("billing")
    changed = await billing.post("/billing/v3/subscriptions/",
                                 json={"application": application["uuid"], "plan": plans["Business"]["uuid"]})
    assert changed.status_code == 201 and changed.json()["monthly"] == "99.00", changed.text
    assert [s["plan_name"] for s in await history(billing, application)] == ["Business", "Developer"]
    assert (await billing.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 404

    # An admin narrowed to this application operates it but does not pay for it.
    scoped = await member("admin", applications=[application["uuid"]])
    narrowed = await scoped.post("/billing/v3/subscriptions/",
                                 json={"application": application["uuid"], "plan": plans["Starter"]["uuid"]})
    assert narrowed.status_code == 403


async def test_another_organisations_application_and_dedicated_plans_are_out_of_reach(
        api, rival, application, settings):
    plans = await plans_by_name(api)
    attack = await rival.post("/billing/v3/subscriptions/",
                              json={"application": application["uuid"], "plan": plans["Developer"]["uuid"]})
    assert attack.status_code == 400 and attack.json() == {"application": ["Application not found."]}
    assert (await rival.get("/billing/v3/subscriptions/", params={"application": application["uuid"]})).status_code \
        == 404
    assert (await rival.get(f"/billing/v3/organisations/{application['organisation']}/billing-details/")).status_code \
        == 404
    assert [s["plan_name"] for s in await history(api, application)] == ["Developer"]

    # A plan of a group dedicated to the rival is not one this organisation may use, nor see.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        group = PlanGroup(name=f"Rival's {uuid.uuid4().hex[:6]}", organisation_id=uuid.UUID(rival.organisation))
        session.add(group)
        await session.flush()
        theirs = Plan(plan_group_id=group.id, name="Theirs", position=0, memory_sizes_mb=[4096], max_instances=9,
                      custom_domains=True, sleeps_when_idle=False, included={})
        session.add(theirs)
        await session.flush()
        theirs_id = str(theirs.id)
    await engine.dispose()
    response = await api.post("/billing/v3/subscriptions/", json={"application": application["uuid"],
                                                                  "plan": theirs_id})
    assert response.status_code == 400 and "may use" in response.json()["plan"][0]
    assert (await api.get(f"/billing/v3/plans/{theirs_id}/")).status_code == 404
    assert theirs_id in {p["uuid"] for p in (await rival.get("/billing/v3/plans/")).json()["results"]}


async def test_a_downgrade_the_application_cannot_follow_is_refused(api, application, verified_domain, trusting_region):
    plans = await plans_by_name(api)
    path = "/billing/v3/subscriptions/"
    assert (await api.post(path, json={"application": application["uuid"],
                                       "plan": plans["Starter"]["uuid"]})).status_code == 201
    live = next(e for e in application["environments"] if e["slug"] == "live")
    await verified_domain(live["uuid"], f"shop-{uuid.uuid4().hex[:6]}.{trusting_region.domain}")
    refused = await api.post(path, json={"application": application["uuid"], "plan": plans["Developer"]["uuid"]})
    assert refused.status_code == 400 and "custom domains" in refused.json()["plan"][0]
    assert (await history(api, application))[0]["plan_name"] == "Starter"


@pytest.fixture
async def free_quota(settings, seeded):
    """The operator's quota of free applications for the seeded organisation, for one test."""
    engine = make_engine(settings.database_url)
    organisation = uuid.UUID(seeded["organisation"])

    async def set_quota(quota: int | None) -> None:
        async with make_sessionmaker(engine)() as session, session.begin():
            row = await session.get(OrganisationBilling, organisation)
            if row is None:
                row = OrganisationBilling(organisation_id=organisation)
                session.add(row)
            row.max_free_applications = quota

    yield set_quota
    await set_quota(None)
    await engine.dispose()


async def test_the_free_applications_quota_refuses_a_move_to_the_free_plan(api, application, free_quota):
    plans = await plans_by_name(api)
    assert (await api.post("/billing/v3/subscriptions/", json={"application": application["uuid"],
                                                               "plan": plans["Starter"]["uuid"]})).status_code == 201
    free_now = 0
    for app in (await api.get("/apps/v3/applications/", params={"page_size": 1000})).json()["results"]:
        [current, *_] = await history(api, app)
        free_now += current["plan_name"] == "Developer"
    await free_quota(free_now)
    refused = await api.post("/billing/v3/subscriptions/", json={"application": application["uuid"],
                                                                 "plan": plans["Developer"]["uuid"]})
    assert refused.status_code == 400 and "free_applications" in refused.json()["plan"][0], refused.text


async def test_a_deleted_applications_subscriptions_are_kept_and_ended(api, application, settings):
    plans = await plans_by_name(api)
    assert (await api.post("/billing/v3/subscriptions/", json={"application": application["uuid"],
                                                               "plan": plans["Starter"]["uuid"]})).status_code == 201
    assert (await api.delete(f"/apps/v3/applications/{application['uuid']}/")).status_code == 204
    # The history is the organisation's, for its invoice, after the application is gone.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session:
        rows = (await session.execute(select(Subscription).where(
            Subscription.application_id == uuid.UUID(application["uuid"])))).scalars().all()
    await engine.dispose()
    assert sorted(r.ended_at is not None for r in rows) == [True, True]
    assert max(r.ended_at for r in rows) > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_deletion_racing_a_plan_change_leaves_no_open_subscription(api, seeded, settings):
    """Whichever commits first, a deleted application is billed for nothing after its deletion
    (a subscription started by a plan change the deletion did not see would bill it forever)."""
    plans = await plans_by_name(api)
    engine = make_engine(settings.database_url)
    try:
        for _ in range(5):
            repo = (await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"],
                                                                   "url": "file:///srv/git/race.git"})).json()
            made = (await api.post("/apps/v3/applications/", json={
                "name": "Race", "slug": f"race-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
                "repository": repo["uuid"]})).json()
            changed, deleted = await asyncio.gather(
                api.post("/billing/v3/subscriptions/", json={"application": made["uuid"],
                                                             "plan": plans["Starter"]["uuid"]}),
                api.delete(f"/apps/v3/applications/{made['uuid']}/"))
            assert deleted.status_code == 204 and changed.status_code in (201, 400, 404), changed.text
            async with make_sessionmaker(engine)() as session:
                still_open = (await session.execute(select(Subscription).where(
                    Subscription.application_id == uuid.UUID(made["uuid"]),
                    Subscription.ended_at.is_(None)))).scalars().all()
            assert still_open == []
    finally:
        await engine.dispose()


async def test_a_move_to_the_free_plan_waits_until_the_application_runs_within_it(api, paid_application):
    """The free plan bills no usage: running above it until the next deployment would be free."""
    plans = await plans_by_name(api)
    live = paid_application["live_status"]["uuid"]
    assert (await api.patch(f"/apps/v3/environments/{live}/", json={"instances": 2})).status_code == 200
    refused = await api.post("/billing/v3/subscriptions/", json={"application": paid_application["uuid"],
                                                                 "plan": plans["Developer"]["uuid"]})
    assert refused.status_code == 400 and "scale it down first" in refused.json()["plan"][0], refused.text
    assert (await api.patch(f"/apps/v3/environments/{live}/", json={"instances": 1})).status_code == 200
    for env in paid_application["environments"]:
        assert (await api.patch(f"/apps/v3/environments/{env['uuid']}/", json={"memory_mb": 256})).status_code \
            in (200, 202)
    moved = await api.post("/billing/v3/subscriptions/", json={"application": paid_application["uuid"],
                                                               "plan": plans["Developer"]["uuid"]})
    assert moved.status_code == 201, moved.text
