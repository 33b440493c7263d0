"""An application's plan limits what it may run: instances per environment (more than one
only where the plan lets that environment scale), memory sizes, services and custom domains;
a new environment starts at the plan's default size; and an application moved to a smaller
plan is scaled down to it at its next deployment, which says so in its log."""
import uuid

import pytest

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.billing import Plan
from regio_controlpanel.db.models import PlanGroup
from regio_controlpanel.domain.scaling import default_memory_mb

from .test_deployments import build_succeeds


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-plan-limits")
    yield nc.jetstream()
    await nc.close()


async def plan_of(api, group_name: str, plan_name: str | None = None) -> tuple[str, str]:
    """(plan group, plan) uuids of a seeded plan (the group's first when no name)."""
    groups = (await api.get("/billing/v3/application-plan-groups/", params={"page_size": 100})).json()["results"]
    group = next(g for g in groups if g["name"] == group_name)
    plan = next(p for p in group["plans"] if plan_name is None or p["name"] == plan_name)
    return group["uuid"], plan["uuid"]


async def new_application(api, seeded, group_name: str | None = None, plan_name: str | None = None,
                          organisation: str | None = None) -> dict:
    """A fresh application with a repository, on the plan named (none: the free Developer)."""
    organisation = organisation or seeded["organisation"]
    repo = (await api.post("/apps/v3/repositories/", json={"organisation": organisation,
                                                           "url": "file:///srv/git/hello.git"})).json()
    body = {"name": "Planned", "slug": f"plan-{uuid.uuid4().hex[:8]}", "organisation": organisation,
            "region": seeded["region"], "repository": repo["uuid"]}
    if group_name is not None:
        body["plan_group"], body["plan"] = await plan_of(api, group_name, plan_name)
    response = await api.post("/apps/v3/applications/", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def move_to(api, application: dict, group_name: str, plan_name: str) -> None:
    _, plan = await plan_of(api, group_name, plan_name)
    response = await api.post("/billing/v3/subscriptions/", json={"application": application["uuid"], "plan": plan})
    assert response.status_code == 201, response.text


def env_url(application: dict, slug: str) -> str:
    return f"/apps/v3/environments/{application[f'{slug}_status']['uuid']}/"


async def size_of(api, application: dict, slug: str) -> tuple[int, int]:
    env = (await api.get(env_url(application, slug))).json()
    return env["instances"], env["memory_mb"]


async def dedicated_plan(settings, organisation: str, **limits) -> tuple[str, str]:
    """A plan group dedicated to ``organisation`` with one plan of ``limits``, as an operator makes one."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            group = PlanGroup(name=f"Own {uuid.uuid4().hex[:8]}", organisation_id=uuid.UUID(organisation))
            session.add(group)
            await session.flush()
            plan = Plan(plan_group_id=group.id, name=f"Own {uuid.uuid4().hex[:6]}", position=0,
                        **{"memory_sizes_mb": [256, 512], "max_instances": 2, "custom_domains": True, **limits})
            session.add(plan)
            await session.flush()
            return str(group.id), str(plan.id)
    finally:
        await engine.dispose()


async def test_the_developer_plan_runs_one_small_instance_without_custom_domains(api, seeded):
    app = await new_application(api, seeded)
    env = (await api.get(env_url(app, "test"))).json()
    assert (env["instances"], env["memory_mb"], env["cpus"]) == (1, 256, 0.2)
    assert (env["sleeps_when_idle"], env["sleep_after_seconds"]) == (True, 900)

    response = await api.patch(env_url(app, "live"), json={"instances": 2})
    assert response.status_code == 400
    assert response.json() == {"instances": ["at most 1 instance on the Developer plan"]}
    response = await api.patch(env_url(app, "test"), json={"memory_mb": 512})
    assert response.status_code == 400
    assert response.json() == {"memory_mb": ["512 MB is not a size of the Developer plan (sizes: 256 MB)"]}
    response = await api.post("/apps/v3/domains/", json={"environment": app["live_status"]["uuid"],
                                                        "domain": f"{uuid.uuid4().hex[:8]}.example.com"})
    assert response.status_code == 400
    assert response.json() == {"domain": ["The Developer plan allows no custom domains."]}
    assert (await api.get("/apps/v3/domains/", params={"environment": app["live_status"]["uuid"]})).json()["count"] == 0
    assert await size_of(api, app, "live") == (1, 256)


async def test_on_starter_only_live_runs_more_than_one_instance(api, seeded):
    app = await new_application(api, seeded, "Business")  # the group's first plan: Starter
    assert await size_of(api, app, "test") == (1, 512)
    env = (await api.get(env_url(app, "test"))).json()
    assert (env["sleeps_when_idle"], env["sleep_after_seconds"]) == (False, None)

    response = await api.patch(env_url(app, "test"), json={"instances": 2})
    assert response.status_code == 400
    assert response.json() == {"instances": ["at most 1 instance in the test environment on the Starter plan "
                                             "(more only in: live)"]}
    assert (await api.patch(env_url(app, "live"), json={"instances": 2})).status_code == 200
    response = await api.patch(env_url(app, "live"), json={"instances": 3})
    assert response.status_code == 400 and response.json() == {"instances": ["at most 2 instances on the Starter plan"]}
    response = await api.patch(env_url(app, "live"), json={"memory_mb": 2048})
    assert response.status_code == 400
    assert response.json() == {"memory_mb": ["2048 MB is not a size of the Starter plan (sizes: 256, 512, 1024 MB)"]}
    assert (await api.patch(env_url(app, "live"), json={"memory_mb": 1024})).status_code == 200
    assert await size_of(api, app, "live") == (2, 1024)

    # A custom environment copies live's size where the plan allows it there: one instance.
    response = await api.post("/apps/v3/environments/", json={
        "application": app["uuid"], "slug": "staging", "copy_from": app["live_status"]["uuid"]})
    assert response.status_code == 201, response.text
    assert (response.json()["instances"], response.json()["memory_mb"]) == (1, 1024)

    # On the Business plan every environment may scale, to larger sizes too.
    await move_to(api, app, "Business", "Business")
    assert (await api.patch(env_url(app, "test"), json={"instances": 4, "memory_mb": 4096})).status_code == 200
    response = await api.patch(env_url(app, "test"), json={"instances": 5})
    assert response.status_code == 400 and response.json() == {"instances": ["at most 4 instances on the Business plan"]}


async def test_a_plan_offers_only_its_services(api, seeded, settings):
    group, plan = await dedicated_plan(settings, seeded["organisation"], services=["s3"])
    repo = (await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"],
                                                           "url": "file:///srv/git/hello.git"})).json()
    response = await api.post("/apps/v3/applications/", json={
        "name": "Media", "slug": f"media-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "repository": repo["uuid"], "plan_group": group, "plan": plan})
    assert response.status_code == 201, response.text
    app = response.json()
    offered = {s["identifier"]: s["uuid"] for s in (await api.get(
        "/apps/v3/services/", params={"region": seeded["region"]})).json()["results"]}
    env = app["test_status"]["uuid"]
    response = await api.post("/apps/v3/service-instances/", json={"environment": env,
                                                                  "service": offered["postgres-18"]})
    assert response.status_code == 400 and list(response.json()) == ["service"]
    assert "does not offer postgres-18 (services: s3)" in response.json()["service"][0]
    assert (await api.post("/apps/v3/service-instances/", json={
        "environment": env, "service": offered["s3"]})).status_code == 201
    listed = (await api.get("/apps/v3/service-instances/", params={"environment": env})).json()
    assert [i["type"] for i in listed["results"]] == ["STORAGE"]


def test_a_new_environment_starts_at_512_mb_or_the_nearest_size_the_plan_allows():
    def plan(*sizes):
        return Plan(name="p", memory_sizes_mb=list(sizes), max_instances=1, scalable_environments=None)

    assert default_memory_mb(plan(256, 512, 1024)) == 512
    assert default_memory_mb(plan(256)) == 256
    assert default_memory_mb(plan(1024, 256, 2048)) == 256  # the largest below 512
    assert default_memory_mb(plan(2048, 1024)) == 1024  # none below: the smallest


async def test_a_downgrade_scales_the_environment_down_at_its_next_deployment(api, js, settings, seeded):
    app = await new_application(api, seeded, "Business", "Business")
    response = await api.patch(env_url(app, "test"), json={"instances": 3, "memory_mb": 2048})
    assert response.status_code == 200, response.text
    # Accepted while the application runs above the new (paid) plan, which bills the usage
    # meanwhile; nothing changes until it deploys.
    await move_to(api, app, "Business", "Starter")
    assert await size_of(api, app, "test") == (3, 2048)

    response = await api.post("/apps/v3/deployments/", json={"environment": app["test_status"]["uuid"]})
    assert response.status_code == 201, response.text
    dep_id = uuid.UUID(response.json()["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    assert (rollout.instances, rollout.memory_mb) == (1, 1024)
    assert await size_of(api, app, "test") == (1, 1024)
    log = (await api.get(f"/apps/v3/deployments/{dep_id}/logs")).json()["logs"]
    line = ("The Starter plan allows 1 instance of at most 1024 MB: this deployment runs 1 instance of 1024 MB "
            "(was 3 of 2048 MB).")
    assert log.count(line) == 1
    # Live is scaled down at its own next deployment, not before.
    assert await size_of(api, app, "live") == (1, 512)


async def test_another_organisations_plan_cannot_be_used(api, rival, seeded, settings):
    group, plan = await dedicated_plan(settings, rival.organisation, max_instances=8,
                                       memory_sizes_mb=[256, 512, 1024, 2048, 4096])
    app = await new_application(api, seeded)
    response = await api.post("/billing/v3/subscriptions/", json={"application": app["uuid"], "plan": plan})
    assert response.status_code == 400 and list(response.json()) == ["plan"]
    response = await api.patch(env_url(app, "test"), json={"instances": 2})
    assert response.status_code == 400 and "Developer" in response.json()["instances"][0]
