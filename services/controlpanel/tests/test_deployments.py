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
    DeploymentCancelled,
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
                await msg.ack_sync()  # before the consumer goes: else the message can come back
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
    assert deployment["status"] == "provisioning" and deployment["success"] is None and deployment["ended_at"] is None
    assert [s["name"] for s in deployment["steps"]] == ["queued", "provisioning"]
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


async def build_succeeds(js, settings, dep_id, image="sha256:feed", commit="abc123"):
    """Plays the builder: the build of ``dep_id`` starts and succeeds; returns the rollout asked for."""
    await take(js, BuildRequested, settings.region, dep_id)
    build_id = uuid.uuid4()
    await publish(js, settings, BuildStarted(deployment_id=dep_id, build_id=build_id))
    await publish(js, settings, BuildFinished(deployment_id=dep_id, build_id=build_id, success=True, commit=commit,
                                              image=image, exposed_port=8000))
    return await take(js, RolloutRequested, settings.region, dep_id)


async def test_a_rollout_carries_the_redirect_domains_and_the_https_redirect(api, js, settings, paid_application,
                                                                             verified_domain):
    env_id = paid_application["test_status"]["uuid"]
    name = f"old.{uuid.uuid4().hex[:8]}.example.com"
    await verified_domain(env_id, name, "REDIRECT")
    assert (await api.patch(f"/apps/v3/environments/{env_id}/", json={"https_redirect": True})).status_code == 200
    dep_id = uuid.UUID((await deploy(api, paid_application))["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    assert rollout.hosts == [f"{paid_application['slug']}-stage.{settings.region_domain}"]
    assert rollout.redirect_hosts == [name] and rollout.https_redirect is True
    assert open_sealed(settings.region_key, rollout.sealed_env)["DOMAIN_REDIRECTS"] == name


async def test_steps_are_timed_from_the_events(api, js, settings, application):
    dep_id = uuid.UUID((await deploy(api, application))["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    for step, percent in (("release commands", 55), ("scaling", 60), ("sanity tests", 75), ("finalizing", 90)):
        await publish(js, settings, RolloutProgressed(deployment_id=dep_id, step=step, percent=percent))
    await publish(js, settings, RolloutFinished(deployment_id=dep_id, environment_id=rollout.environment_id, success=True))
    done = await wait_for(api, dep_id, lambda d: d["ended_at"] is not None)
    names = [s["name"] for s in done["steps"]]
    assert names == ["queued", "provisioning", "build", "release", "release commands", "scaling", "sanity tests",
                     "finalizing"]
    for step, following in zip(done["steps"], done["steps"][1:]):
        assert step["ended_at"] == following["started_at"] and step["started_at"] <= step["ended_at"]
    assert done["steps"][-1]["ended_at"] == done["ended_at"]


async def test_a_newer_deployment_supersedes_the_one_waiting(api, js, settings, application):
    env_id = application["test_status"]["uuid"]
    first, waiting, newest = [
        (await api.post("/apps/v3/deployments/", json={"environment": env_id})).json() for _ in range(3)]
    superseded = (await api.get(f"/apps/v3/deployments/{waiting['uuid']}/")).json()
    assert superseded["status"] == "cancelled" and superseded["success"] is False and superseded["ended_at"]
    assert newest["uuid"] in superseded["error"]
    cancelled = await take(js, DeploymentCancelled, settings.region, uuid.UUID(waiting["uuid"]))
    assert "superseded" in cancelled.reason
    for running in (first, newest):
        assert (await api.get(f"/apps/v3/deployments/{running['uuid']}/")).json()["ended_at"] is None


async def test_a_cancelled_deployment_ends_at_once_and_stays_ended(api, js, settings, application):
    dep_id = uuid.UUID((await deploy(api, application))["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    response = await api.post(f"/apps/v3/deployments/{dep_id}/cancel/", json={"reason": "wrong branch"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["error"] == "Cancelled: wrong branch"
    assert (await take(js, DeploymentCancelled, settings.region, dep_id)).reason == "wrong branch"
    again = await api.post(f"/apps/v3/deployments/{dep_id}/cancel/", json={})
    assert again.status_code == 409 and "already ended" in again.json()["non_field_errors"][0]
    # The build finishing anyway does not revive it, nor start a rollout.
    await publish(js, settings, BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=True,
                                              commit="abc", image="sha256:late", exposed_port=8000))
    await asyncio.sleep(0.5)
    assert (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()["status"] == "cancelled"
    log = (await api.get(f"/apps/v3/deployments/{dep_id}/logs")).json()["logs"]
    assert "Deployment cancelled: wrong branch. The previous release keeps serving." in log


async def test_a_redeploy_makes_a_new_release_from_the_old_one_without_a_build(api, js, settings, application):
    env_id = application["test_status"]["uuid"]
    first = uuid.UUID((await deploy(api, application))["uuid"])
    old_rollout = await build_succeeds(js, settings, first, image="sha256:old", commit="0ld")
    await publish(js, settings, RolloutFinished(deployment_id=first, environment_id=old_rollout.environment_id,
                                                success=True))
    await wait_for(api, first, lambda d: d["success"] is True)
    # The variable changes afterwards: a rollback brings back the release as it was.
    variable = next(v for v in (await api.get("/apps/v3/environment-variables/", params={"environment": env_id})).json()["results"]
                    if v["name"] == "GREETING")
    await api.patch(f"/apps/v3/environment-variables/{variable['uuid']}/", json={"value": "changed"})

    response = await api.post("/apps/v3/deployments/", json={"environment": env_id, "redeploy": str(first)})
    assert response.status_code == 201, response.text
    again = response.json()
    assert again["redeploy_of"] == str(first) and again["status"] == "release" and again["commit"] == "0ld"
    assert again["release"] != str(old_rollout.release_id)
    rollout = await take(js, RolloutRequested, settings.region, uuid.UUID(again["uuid"]))
    assert rollout.image == "sha256:old" and str(rollout.release_id) == again["release"]
    assert open_sealed(settings.region_key, rollout.sealed_env)["GREETING"] == "hi"

    other_env = application["live_status"]["uuid"]
    response = await api.post("/apps/v3/deployments/", json={"environment": other_env, "redeploy": str(first)})
    assert response.status_code == 400 and "redeploy" in response.json()


async def test_a_cancel_that_came_too_late_reports_the_release_that_serves(api, js, settings, application):
    dep_id = uuid.UUID((await deploy(api, application))["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    assert (await api.post(f"/apps/v3/deployments/{dep_id}/cancel/", json={})).status_code == 200
    # The controller had already moved the routes: it finishes the rollout instead.
    await publish(js, settings, RolloutFinished(deployment_id=dep_id, environment_id=rollout.environment_id, success=True))
    done = await wait_for(api, dep_id, lambda d: d["status"] == "success")
    assert done["success"] is True and done["error"] is None
    assert "The cancel came too late" in (await api.get(f"/apps/v3/deployments/{dep_id}/logs")).json()["logs"]
