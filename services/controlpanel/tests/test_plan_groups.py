"""Plan groups are what an organisation pays for: only owners, admins and billing members
choose an application's, and only among those its organisation may use (the public ones
and those dedicated to it). An application on none is on the free group's plan."""
import uuid

import pytest

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.billing import Plan
from regio_controlpanel.db.models import PlanGroup


async def plan_group_of(settings, organisation: str | None) -> str:
    """A plan group dedicated to ``organisation`` (public when None), as an operator makes one."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            group = PlanGroup(name=f"Plan {uuid.uuid4().hex[:8]}",
                              organisation_id=uuid.UUID(organisation) if organisation else None)
            session.add(group)
            await session.flush()
            session.add(Plan(plan_group_id=group.id, name="Large", position=0, max_instances=8,
                             memory_sizes_mb=[256, 512, 1024, 2048, 4096]))
            await session.flush()
            return str(group.id)
    finally:
        await engine.dispose()


async def group_named(api, name: str) -> str:
    groups = (await api.get("/billing/v3/application-plan-groups/", params={"page_size": 100})).json()["results"]
    return next(g["uuid"] for g in groups if g["name"] == name)


@pytest.fixture
async def public_plan(api):
    return await group_named(api, "Business")


@pytest.fixture
async def free_group(api):
    return await group_named(api, "Developer")


async def test_a_member_cannot_choose_the_plan_group_but_billing_can(member, api, application, public_plan,
                                                                     free_group):
    path = f"/apps/v3/applications/{application['uuid']}/"
    dev = await member("member")
    refused = await dev.patch(path, json={"plan_group": public_plan})
    assert refused.status_code == 403 and "member" in refused.json()["detail"]
    assert (await api.get(path)).json()["plan_group"] == free_group

    billing = await member("billing")
    chosen = await billing.patch(path, json={"plan_group": public_plan})
    assert chosen.status_code == 200, chosen.text
    assert (await api.get(path)).json()["plan_group"] == public_plan
    # Choosing the plan is all billing may do with an application.
    assert (await billing.patch(path, json={"plan_group": None, "name": "Renamed"})).status_code == 404
    assert (await billing.get(path)).status_code == 404

    admin = await member("admin")
    assert (await admin.patch(path, json={"plan_group": None})).status_code == 200
    scoped_admin = await member("admin", applications=[application["uuid"]])
    assert (await scoped_admin.patch(path, json={"plan_group": public_plan})).status_code == 403
    assert (await api.get(path)).json()["plan_group"] == free_group


async def test_another_organisations_dedicated_plan_group_cannot_be_used_or_seen(
        api, stranger, application, seeded, settings, free_group):
    theirs = await plan_group_of(settings, stranger.organisation)
    path = f"/apps/v3/applications/{application['uuid']}/"

    response = await api.patch(path, json={"plan_group": theirs})
    assert response.status_code == 400 and "may use" in response.json()["plan_group"][0]
    assert (await api.get(path)).json()["plan_group"] == free_group
    response = await api.post("/apps/v3/applications/", json={
        "name": "Big", "slug": f"big-{uuid.uuid4().hex[:6]}", "organisation": seeded["organisation"],
        "plan_group": theirs})
    assert response.status_code == 400 and "plan_group" in response.json()
    assert (await api.get(f"/billing/v3/application-plan-groups/{theirs}/")).status_code == 404
    listed = (await api.get("/billing/v3/application-plan-groups/", params={"page_size": 1000})).json()["results"]
    assert theirs not in {p["uuid"] for p in listed}

    # Their own, they see and may use.
    assert (await stranger.get(f"/billing/v3/application-plan-groups/{theirs}/")).status_code == 200
    ours = await plan_group_of(settings, seeded["organisation"])
    assert (await api.patch(path, json={"plan_group": ours})).json()["plan_group"] == ours
