"""One tenant's oversized request must not stall the region (issue 14, point 8): the API
refuses variables a release cannot carry; a release too big for the bus anyway (variables set
before the limit) fails its own deployment while the next one goes on; a message any service
set aside fails the deployment it belonged to, with the reason in its log."""
import asyncio
import uuid

import pytest

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.dead_letters import DeadLetters, listed
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentLogAppended,
    EnvironmentScaled,
    MessageSetAside,
    RolloutRequested,
    subject_for,
)
from regio_common.sealing import open_sealed
from regio_controlpanel.db.models import EnvironmentVariable
from regio_controlpanel.messaging import handlers

from .test_deployments import deploy, publish, take, wait_for

KIB = 1024


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-message-limits")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture(scope="module")
async def sessions(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def build(js, settings, deployment_id: uuid.UUID) -> None:
    """The builder's part, as it would publish it: the build ran and made an image."""
    await take(js, BuildRequested, settings.region, deployment_id)
    build_id = uuid.uuid4()
    await publish(js, settings, BuildStarted(deployment_id=deployment_id, build_id=build_id))
    await publish(js, settings, BuildFinished(deployment_id=deployment_id, build_id=build_id, success=True,
                                              commit="abc123", image="sha256:feed", exposed_port=8000))


async def log_of(api, deployment_id) -> str:
    return (await api.get(f"/apps/v3/deployments/{deployment_id}/logs")).json()["logs"]


async def test_variables_a_release_cannot_carry_are_refused_naming_the_field(api, application):
    env_id = application["test_status"]["uuid"]
    one_value = await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "HUGE", "value": "x" * (65 * KIB)})
    assert one_value.status_code == 400 and "value" in one_value.json()

    for n in range(5):  # 250 KiB in all: allowed
        response = await api.post("/apps/v3/environment-variables/", json={
            "environment": env_id, "name": f"CERT_{n}", "value": "x" * (50 * KIB), "is_sensitive": n % 2 == 1})
        assert response.status_code == 201, response.text
    over = await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "ONE_MORE", "value": "x" * (20 * KIB)})
    assert over.status_code == 400, over.text
    assert "262144 bytes in all" in over.json()["value"][0]

    listed = (await api.get("/apps/v3/environment-variables/", params={"environment": env_id})).json()
    plain = next(v for v in listed["results"] if v["name"] == "CERT_0")
    grown = await api.patch(f"/apps/v3/environment-variables/{plain['uuid']}/", json={"value": "y" * (64 * KIB)})
    assert grown.status_code == 400 and "262144 bytes in all" in grown.json()["value"][0]
    shrunk = await api.patch(f"/apps/v3/environment-variables/{plain['uuid']}/", json={"value": "small"})
    assert shrunk.status_code == 200, shrunk.text


async def test_the_limit_counts_variables_as_they_travel_not_as_utf8(api, js, settings, application):
    """A release seals its variables as JSON, where an "é" is six bytes (two in UTF-8): 120 KB
    of them in UTF-8 would have been let in and could never have been released."""
    env_id = application["test_status"]["uuid"]
    too_many = await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "ACCENTS", "value": "é" * 60_000})
    assert too_many.status_code == 400 and "262144 bytes in all" in too_many.json()["value"][0]
    fits = await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "ACCENTS", "value": "é" * 40_000})
    assert fits.status_code == 201, fits.text

    deployment = await deploy(api, application)
    await build(js, settings, uuid.UUID(deployment["uuid"]))
    rollout = await take(js, RolloutRequested, settings.region, uuid.UUID(deployment["uuid"]))  # it travels
    assert open_sealed(settings.region_key, rollout.sealed_env)["ACCENTS"] == "é" * 40_000


async def test_a_release_too_big_for_the_bus_fails_cleanly_and_the_next_deployment_goes_on(
        api, js, settings, sessions, application, seeded):
    # Variables set before the API limited them (written here as they were then): 1.5 MB.
    async with sessions() as session, session.begin():
        for n in range(5):
            session.add(EnvironmentVariable(environment_id=uuid.UUID(application["test_status"]["uuid"]),
                                            name=f"LEGACY_{n}", value="z" * (300 * KIB), is_sensitive=False))
    bad = await deploy(api, application)
    await build(js, settings, uuid.UUID(bad["uuid"]))
    failed = await wait_for(api, bad["uuid"], lambda d: d["ended_at"] is not None)
    assert failed["success"] is False and failed["status"] == "failure"
    log = await log_of(api, bad["uuid"])
    assert "Release failed: the release's environment is" in log and "over the limit of 1048576" in log
    assert "The previous release keeps serving." in log

    # Another tenant's deployment right after it: its messages are not held up behind the bad one.
    other = (await api.post("/apps/v3/applications/", json={
        "name": "Other", "slug": f"other-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "repository": application["repository"], "branch": "main"})).json()
    good = await deploy(api, other)
    await build(js, settings, uuid.UUID(good["uuid"]))
    rollout = await take(js, RolloutRequested, settings.region, uuid.UUID(good["uuid"]))
    assert rollout.image == "sha256:feed"


async def test_a_message_set_aside_fails_the_deployment_it_belonged_to(api, js, settings, application):
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    # The builder's outbox relay could not publish the build's result: it sets it aside.
    result = BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=True, image="sha256:feed")
    await DeadLetters(js, "builder").set_aside(result.subject(settings.region), result.headers(),
                                               result.model_dump_json().encode(),
                                               "the stream refused it: message size exceeds maximum allowed")
    failed = await wait_for(api, dep_id, lambda d: d["ended_at"] is not None)
    assert failed["success"] is False
    assert ("Deployment failed: the builder could not send a build.finished message: the stream refused it: "
            "message size exceeds maximum allowed.") in await log_of(api, dep_id)


async def test_a_command_set_aside_shows_among_the_environments_events(api, js, settings, application):
    env_id = uuid.UUID(application["live_status"]["uuid"])
    scale = EnvironmentScaled(environment_id=env_id, instances=3)
    await DeadLetters(js, "controller").set_aside(
        scale.subject(settings.region), scale.headers(), scale.model_dump_json().encode(),
        "handling it failed 8 times, last with RuntimeError: boom", consumer="controller-environments-x",
        stream_sequence=42)
    for _ in range(100):
        events = (await api.get(f"/apps/v3/environments/{env_id}/events/")).json()["results"]
        if events:
            break
        await asyncio.sleep(0.1)
    assert events[0]["reason"] == "failed"
    assert "environment.scaled" in events[0]["message"] and "RuntimeError: boom" in events[0]["message"]


async def events_of(api, env_id) -> list[dict]:
    return (await api.get(f"/apps/v3/environments/{env_id}/events/")).json()["results"]


async def test_a_runners_dead_letter_is_kept_but_fails_nothing(api, js, settings, application):
    """A runner agent may set aside under its own name, and could name any deployment there:
    its records are listed for operators, never acted on."""
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    test_env, live_env = (uuid.UUID(application[e]["uuid"]) for e in ("test_status", "live_status"))
    runner = DeadLetters(js, "runner-agent")  # what the runner's NATS user may publish
    forged = BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=True)
    await runner.set_aside(forged.subject(settings.region), forged.headers(), forged.model_dump_json().encode(),
                           "forged by a runner")
    scale = EnvironmentScaled(environment_id=test_env, instances=3)
    await runner.set_aside(scale.subject(settings.region), scale.headers(), scale.model_dump_json().encode(),
                           "forged by a runner", consumer="controller-environments-x", stream_sequence=1)
    # Then a genuine record, handled after them (one consumer, in order): when it shows, they were handled.
    genuine = EnvironmentScaled(environment_id=live_env, instances=2)
    await DeadLetters(js, "controller").set_aside(
        genuine.subject(settings.region), genuine.headers(), genuine.model_dump_json().encode(),
        "handling it failed 8 times", consumer="controller-environments-x", stream_sequence=2)
    for _ in range(100):
        if await events_of(api, live_env):
            break
        await asyncio.sleep(0.1)
    assert await events_of(api, live_env)

    still = (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()
    assert still["ended_at"] is None and still["success"] is None
    assert "forged" not in await log_of(api, dep_id)
    assert await events_of(api, test_env) == []


async def test_a_region_is_believed_only_about_its_own_deployments(api, app, sessions, settings, application):
    """The consumer of another region's events and dead letters (whose runners may publish log
    lines, and whose services set aside) changes nothing of this region's deployments; this
    region's own consumer does."""
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    env_id = uuid.UUID(application["test_status"]["uuid"])
    deployments = app.state.deployments
    log = DeploymentLogAppended(deployment_id=dep_id, lines=["written by a runner of another region"])
    record = MessageSetAside(service="builder", message_subject="region.elsewhere.events.builds.finished",
                             message_kind="build.finished", message_id="x", size_bytes=1, reason="forged",
                             deployment_id=dep_id)
    about_environment = record.model_copy(update={"deployment_id": None, "environment_id": env_id})

    for region in ("elsewhere", settings.region):
        async with sessions() as session, session.begin():
            await handlers.dispatcher(deployments, region)(session, log)
            await handlers.dead_letters_handler(deployments, region)(session, about_environment)
        if region == "elsewhere":
            assert "written by a runner" not in await log_of(api, dep_id)
            assert await events_of(api, env_id) == []
    assert "written by a runner of another region" in await log_of(api, dep_id)  # this region's own: kept
    assert "forged" in (await events_of(api, env_id))[0]["message"]

    async with sessions() as session, session.begin():
        await handlers.dead_letters_handler(deployments, "elsewhere")(session, record)
    assert (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()["ended_at"] is None
    async with sessions() as session, session.begin():
        await handlers.dead_letters_handler(deployments, settings.region)(session, record)
    assert (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()["success"] is False


async def test_a_build_result_forged_on_the_deployment_logs_subject_releases_nothing(api, js, settings, application):
    """Every runner may publish the deployment log's subject: a build.finished it sends there
    (its kind is a header it chooses) is set aside, and neither releases nor fails the deployment."""
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    forged = BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=True, commit="evil",
                           image="sha256:attackers", exposed_port=8000)
    await js.publish(subject_for(DeploymentLogAppended, settings.region), forged.model_dump_json().encode(),
                     headers=forged.headers())
    await publish(js, settings, DeploymentLogAppended(deployment_id=dep_id, lines=["after the forgery"]))
    for _ in range(100):
        if "after the forgery" in await log_of(api, dep_id):
            break
        await asyncio.sleep(0.1)
    assert "after the forgery" in await log_of(api, dep_id)

    [record] = [r for r in await listed(js, settings.region) if r.message_id == str(forged.id)]
    assert record.message_kind == "build.finished" and record.deployment_id is None
    await asyncio.sleep(0.5)  # and what the dead letter's consumer does with it
    still = (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()
    assert still["status"] == "provisioning" and still["ended_at"] is None and still["commit"] is None
    assert "sha256:attackers" not in await log_of(api, dep_id)
