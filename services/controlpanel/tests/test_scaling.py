"""Scaling an environment through the API without deploying new code: a new instance count
goes to the controller, a new memory size redeploys the serving release without a build,
both within the application's plan; rollouts say when their region is dedicated."""
import asyncio
import uuid

import pytest
from sqlalchemy import text

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    EnvironmentScaled,
    RolloutFinished,
    RolloutRequested,
    decode,
    subject_for,
)
from regio_controlpanel.db.models import PhysicalRegion, Region

from .test_deployments import build_succeeds, deploy, publish, wait_for
from .test_plan_limits import move_to, new_application

SIZES = "256, 512, 1024, 2048, 4096"


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-scaling")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def db(settings):
    engine = make_engine(settings.database_url)
    yield engine
    await engine.dispose()


async def take(js, message_type, region: str, matches, timeout=10.0):
    """The next command of a type that ``matches``, taken as the service it is for would take it."""
    durable = f"test-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subject_for(message_type, region), durable=durable, stream=bus.COMMANDS.name)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(10, timeout=1)
            except Exception:
                continue
            for msg in msgs:
                await msg.ack()
                message = decode(msg.headers, msg.data)
                if isinstance(message, message_type) and matches(message):
                    return message
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(bus.COMMANDS.name, durable)
    raise AssertionError(f"no matching {message_type.__name__}")


@pytest.fixture
async def business(api, seeded) -> dict:
    """An application on the seeded Business plan: up to 4 instances in every environment, of up to 4096 MB."""
    return await new_application(api, seeded, "Business", "Business")


async def commands_in_outbox(db, message_type) -> list:
    """What the control panel has sent of a type (kept in its outbox a day after sending)."""
    async with db.connect() as conn:
        rows = (await conn.execute(text("select headers, payload from controlpanel.outbox "
                                        "where headers->>'Regio-Kind' = :kind"), {"kind": message_type.kind})).all()
    return [decode(headers, payload) for headers, payload in rows]


async def test_the_plan_limits_instances_and_memory(api, application):
    env_id = application["test_status"]["uuid"]
    url = f"/apps/v3/environments/{env_id}/"
    fresh = (await api.get(url)).json()
    assert (fresh["instances"], fresh["memory_mb"], fresh["cpus"]) == (1, 256, 0.2)  # the free Developer plan
    assert fresh["deployment_in_progress"] is None

    response = await api.patch(url, json={"instances": 2})
    assert response.status_code == 400 and response.json() == {"instances": ["at most 1 instance on the Developer plan"]}
    response = await api.patch(url, json={"memory_mb": 1024})
    assert response.status_code == 400
    assert response.json() == {"memory_mb": ["1024 MB is not a size of the Developer plan (sizes: 256 MB)"]}

    await move_to(api, application, "Business", "Business")
    response = await api.patch(url, json={"instances": 5})
    assert response.status_code == 400 and response.json() == {"instances": ["at most 4 instances on the Business plan"]}
    response = await api.patch(url, json={"memory_mb": 768})
    assert response.status_code == 400 and response.json() == {"memory_mb": [f"Choose one of {SIZES} (MB)."]}
    for bad in (0, -1, None, "two"):
        response = await api.patch(url, json={"instances": bad})
        assert response.status_code == 400 and list(response.json()) == ["instances"], bad
    # A refused change changes nothing, not even the fields sent with it.
    response = await api.patch(url, json={"instances": 2, "memory_mb": 768})
    assert response.status_code == 400 and list(response.json()) == ["memory_mb"]
    after = (await api.get(url)).json()
    assert (after["instances"], after["memory_mb"], after["cpus"]) == (1, 256, 0.2)


async def test_a_new_count_goes_to_the_controller_and_into_later_rollouts(api, js, settings, business):
    env_id = business["test_status"]["uuid"]
    response = await api.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 3})
    assert response.status_code == 200, response.text
    env = response.json()
    assert (env["instances"], env["memory_mb"], env["cpus"]) == (3, 512, 0.25)
    assert env["deployment_in_progress"] is None  # a count needs no deployment
    scaled = await take(js, EnvironmentScaled, settings.region, lambda m: str(m.environment_id) == env_id)
    assert scaled.instances == 3
    [event, *_] = (await api.get("/iam/v3/audit-events/", params={"target": env_id})).json()["results"]
    assert event["action"] == "environment.update" and event["changes"] == {"instances": 3}

    dep_id = uuid.UUID((await deploy(api, business))["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    assert (rollout.instances, rollout.memory_mb) == (3, 512)
    assert rollout.dedicated_to is None  # a public region


async def test_a_new_size_redeploys_the_serving_release_without_a_build(api, js, settings, business, db):
    env_id = business["test_status"]["uuid"]
    first = uuid.UUID((await deploy(api, business))["uuid"])
    served = await build_succeeds(js, settings, first, image="sha256:small", commit="5ma11")
    await publish(js, settings, RolloutFinished(deployment_id=first, environment_id=served.environment_id,
                                                success=True))
    await wait_for(api, first, lambda d: d["success"] is True)

    response = await api.patch(f"/apps/v3/environments/{env_id}/", json={"memory_mb": 1024})
    assert response.status_code == 200, response.text
    env = response.json()
    assert (env["memory_mb"], env["cpus"], env["instances"]) == (1024, 0.5, 1)
    redeploy_id = env["deployment_in_progress"]["uuid"]

    redeploy = (await api.get(f"/apps/v3/deployments/{redeploy_id}/")).json()
    assert redeploy["redeploy_of"] == str(first) and redeploy["commit"] == "5ma11"
    assert "build" not in [s["name"] for s in redeploy["steps"]]
    rollout = await take(js, RolloutRequested, settings.region, lambda m: str(m.deployment_id) == redeploy_id)
    assert (rollout.memory_mb, rollout.instances, rollout.image) == (1024, 1, "sha256:small")
    assert str(rollout.release_id) == redeploy["release"] != str(served.release_id)
    assert redeploy_id not in {str(b.deployment_id) for b in await commands_in_outbox(db, BuildRequested)}
    listed = (await api.get("/apps/v3/deployments/", params={"environment": env_id})).json()["results"]
    assert [d["uuid"] for d in listed[:2]] == [redeploy_id, str(first)]
    log = (await api.get(f"/apps/v3/deployments/{redeploy_id}/logs")).json()["logs"]
    assert "to resize its instances to 1024 MB (0.5 CPU)" in log
    trail = (await api.get("/iam/v3/audit-events/", params={"target": redeploy_id})).json()["results"]
    assert [e["action"] for e in trail] == ["deployment.create"] and trail[0]["changes"]["memory_mb"] == 1024

    # While that deployment is under way the size stays; the count may still change.
    response = await api.patch(f"/apps/v3/environments/{env_id}/", json={"memory_mb": 2048})
    assert response.status_code == 409 and list(response.json()) == ["memory_mb"]
    assert (await api.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 2})).status_code == 200
    # The same size again is no change, and no deployment.
    same = await api.patch(f"/apps/v3/environments/{env_id}/", json={"memory_mb": 1024})
    assert same.status_code == 200 and same.json()["deployment_in_progress"]["uuid"] == redeploy_id


async def test_a_new_size_before_any_deployment_applies_to_the_first(api, js, settings, business):
    env_id = business["test_status"]["uuid"]
    response = await api.patch(f"/apps/v3/environments/{env_id}/", json={"memory_mb": 2048})
    assert response.status_code == 200, response.text
    assert response.json()["cpus"] == 1.0 and response.json()["deployment_in_progress"] is None
    assert (await api.get("/apps/v3/deployments/", params={"environment": env_id})).json()["count"] == 0
    dep_id = uuid.UUID((await deploy(api, business))["uuid"])
    assert (await build_succeeds(js, settings, dep_id)).memory_mb == 2048


async def test_who_may_deploy_may_scale_but_not_change_the_settings(api, member, stranger, business):
    env_id = business["test_status"]["uuid"]
    dev = await member("member")
    response = await dev.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 2})
    assert response.status_code == 200 and response.json()["instances"] == 2
    response = await dev.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 3, "branch": "other"})
    assert response.status_code == 403
    assert (await api.get(f"/apps/v3/environments/{env_id}/")).json()["instances"] == 2
    billing = await member("billing")
    assert (await billing.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 3})).status_code == 404
    assert (await stranger.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 3})).status_code == 404


async def test_a_rollout_in_a_dedicated_region_names_its_organisation(api, js, settings, seeded, db):
    async with make_sessionmaker(db)() as session, session.begin():
        physical = PhysicalRegion(name=f"dedicated {uuid.uuid4().hex[:6]}", vendor="test", location="elsewhere")
        session.add(physical)
        await session.flush()
        region = Region(slug=f"d{uuid.uuid4().hex[:8]}", name="Dedicated", domain=f"ded.{settings.region_domain}",
                        physical_region_id=physical.id, organisation_id=uuid.UUID(seeded["organisation"]),
                        allow_local_repositories=True)  # it builds the file:// repository below
        session.add(region)
        await session.flush()
        region_id, region_slug = region.id, region.slug
    repo = (await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"],
                                                           "url": "file:///srv/git/hello.git"})).json()
    groups = (await api.get("/billing/v3/application-plan-groups/")).json()["results"]
    business = next(g for g in groups if g["name"] == "Business")  # the free plan has no dedicated regions
    app = (await api.post("/apps/v3/applications/", json={
        "name": "Own", "slug": f"own-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": str(region_id), "repository": repo["uuid"], "plan_group": business["uuid"]})).json()
    dep_id = uuid.UUID((await api.post("/apps/v3/deployments/", json={
        "environment": app["test_status"]["uuid"]})).json()["uuid"])
    assert await take(js, BuildRequested, region_slug, lambda m: m.deployment_id == dep_id)
    # The region's builder's events, on its own subjects (the control panel served the region
    # within seconds of its creation, and believes a region only about its own deployments).
    build_id = uuid.uuid4()
    for message in (BuildStarted(deployment_id=dep_id, build_id=build_id),
                    BuildFinished(deployment_id=dep_id, build_id=build_id, success=True, commit="abc",
                                  image="sha256:own", exposed_port=8000)):
        await js.publish(message.subject(region_slug), message.model_dump_json().encode(), headers=message.headers())
    rollout = await take(js, RolloutRequested, region_slug, lambda m: m.deployment_id == dep_id)
    assert rollout.dedicated_to == uuid.UUID(seeded["organisation"])
