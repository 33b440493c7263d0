"""A deployment as the control panel drives it: it asks the builder over JetStream and
advances on the builder's and controller's events (published here as those services would)."""
import asyncio
import uuid

import pytest

from regio_common import bus
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentLogAppended,
    RolloutFinished,
    RolloutProgressed,
    RolloutRequested,
    decode,
    subject_for,
)
from regio_common.sealing import open_sealed


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-deployments")
    yield nc.jetstream()
    await nc.close()


async def take(js, message_type, region, deployment_id, timeout=10.0):
    """The next message of a type for this deployment (commands are consumed, as a service would)."""
    stream = bus.COMMANDS.name if message_type.topic.startswith("commands.") else bus.EVENTS.name
    durable = f"test-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subject_for(message_type, region), durable=durable, stream=stream)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(1, timeout=1)
            except Exception:
                continue
            for msg in msgs:
                await msg.ack()
                message = decode(msg.headers, msg.data)
                if message.deployment_id == deployment_id:
                    return message
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(stream, durable)
    raise AssertionError(f"no {message_type.__name__} for {deployment_id}")


async def publish(js, settings, message):
    await js.publish(message.subject(settings.region), message.model_dump_json().encode(), headers=message.headers())


async def wait_for(api, deployment_id, predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        deployment = (await api.get(f"/apps/v3/deployments/{deployment_id}/")).json()
        if predicate(deployment):
            return deployment
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"deployment did not get there: {deployment}")
        await asyncio.sleep(0.05)


async def deploy(api, application):
    env_id = application["test_status"]["uuid"]
    await api.post("/apps/v3/environment-variables/", json={"environment": env_id, "name": "GREETING", "value": "hi"})
    await api.post("/apps/v3/environment-variables/", json={
        "environment": env_id, "name": "TOKEN", "value": "very-secret", "is_sensitive": True})
    response = await api.post("/apps/v3/deployments/", json={"environment": env_id})
    assert response.status_code == 201, response.text
    deployment = response.json()
    assert deployment["status"] == "queued" and deployment["success"] is None and deployment["ended_at"] is None
    return deployment


async def test_a_deployment_runs_through_build_release_and_rollout(api, js, settings, application):
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    build = await take(js, BuildRequested, settings.region, dep_id)
    assert build.repository_url == "file:///srv/git/hello.git" and build.branch == "main"

    build_id = uuid.uuid4()
    await publish(js, settings, BuildStarted(deployment_id=dep_id, build_id=build_id))
    await publish(js, settings, DeploymentLogAppended(deployment_id=dep_id, lines=["Step 1/2 : FROM x", "Step 2/2 : EXPOSE 8000"]))
    await publish(js, settings, BuildFinished(deployment_id=dep_id, build_id=build_id, success=True, commit="abc123",
                                              image="sha256:feed", exposed_port=8000))
    rollout = await take(js, RolloutRequested, settings.region, dep_id)
    env = open_sealed(settings.region_key, rollout.sealed_env)
    slug = application["slug"]
    assert env["GREETING"] == "hi" and env["TOKEN"] == "very-secret"
    assert env["DOMAIN"] == f"{slug}-stage.{settings.region_domain}" and env["STAGE"] == "test"
    assert env["PORT"] == "8000" and rollout.port == 8000 and env["SECRET_KEY"]
    assert rollout.hosts == [env["DOMAIN"]] and rollout.image == "sha256:feed"

    await publish(js, settings, RolloutProgressed(deployment_id=dep_id, step="sanity tests", percent=75))
    await wait_for(api, dep_id, lambda d: d["status"] == "sanity tests" and d["percent"] == 75)
    await publish(js, settings, RolloutFinished(deployment_id=dep_id, environment_id=rollout.environment_id, success=True))
    done = await wait_for(api, dep_id, lambda d: d["ended_at"] is not None)
    assert done["success"] is True and done["percent"] == 100 and done["status"] == "success"
    assert "GREETING" in done["environment_variables"] and done["commit"] == "abc123"

    log = (await api.get(f"/apps/v3/deployments/{dep_id}/logs")).json()
    assert "Step 1/2 : FROM x\nStep 2/2 : EXPOSE 8000\n" in log["logs"]
    assert log["logs"].index("Step 1/2") < log["logs"].index("succeeded")
    follow = (await api.get(f"/apps/v3/deployments/{dep_id}/logs", params={"offset": log["next_offset"]})).json()
    assert follow["logs"] == "" and follow["ended"] is True

    variables = (await api.get(f"/apps/v3/deployments/{dep_id}/environment-variables")).json()
    assert variables["environment_variables"]["GREETING"] == "hi"
    assert variables["environment_variables"]["TOKEN"] == "********"

    env_after = (await api.get(f"/apps/v3/environments/{application['test_status']['uuid']}/")).json()
    assert env_after["last_finished_deployment"]["uuid"] == str(dep_id)
    listed = (await api.get("/apps/v3/deployments/", params={"application": application["uuid"]})).json()
    assert listed["results"][0]["uuid"] == str(dep_id)


async def test_a_failed_build_ends_the_deployment_with_the_reason(api, js, settings, application):
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    await publish(js, settings, DeploymentLogAppended(deployment_id=dep_id, lines=["COPY failed: missing.txt"]))
    await publish(js, settings, BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=False,
                                              error="COPY failed: file not found"))
    done = await wait_for(api, dep_id, lambda d: d["ended_at"] is not None)
    assert done["success"] is False and done["status"] == "failure"
    log = (await api.get(f"/apps/v3/deployments/{dep_id}/logs")).json()["logs"]
    assert "COPY failed: missing.txt" in log and "Build failed: COPY failed: file not found" in log
    # A late event cannot revive an ended deployment.
    await publish(js, settings, RolloutFinished(deployment_id=dep_id, environment_id=uuid.uuid4(), success=True))
    await asyncio.sleep(0.5)
    assert (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()["success"] is False
