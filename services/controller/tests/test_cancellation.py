"""Cancelling a deployment during its rollout, or before its rollout was requested, or after
it ended. Against real Postgres and NATS, with the runner agent and the ingress played by
their test doubles (see conftest.py)."""
from uuid import uuid4

from regio_common.bus import EVENTS
from regio_common.messages import (
    DeploymentCancelled,
    DeploymentLogAppended,
    EnvironmentHostsChanged,
    RolloutFinished,
    RolloutProgressed,
)
from regio_controller.messaging.consumers import cancellations_consumer

from .conftest import eventually

REASON = "cancelled by ada@example.test"
CANCELLED = f"cancelled: {REASON}"


def log_of(region, deployment_id) -> list[str]:
    return [line for m in region.events.of(DeploymentLogAppended, deployment_id) for line in m.lines]


def routes_of(response) -> dict:
    assert response.status_code == 200, response.text
    return {r["environment_id"]: r for r in response.json()}


async def _serve(region, runner, environment, image="app:v1"):
    good = await region.app_server(200)
    runner.addresses[image] = good.address
    request = await region.request(region.rollout(environment, image))
    finished = await region.events.finished(request.deployment_id)
    assert finished.success, finished.error
    return request


async def _cancel(region, deployment_id) -> DeploymentCancelled:
    return await region.send(DeploymentCancelled(deployment_id=deployment_id, reason=REASON))


async def test_cancelling_a_running_rollout_removes_its_instances_and_the_previous_release_keeps_serving(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        await _serve(region, runner, environment)
        before = ingress.routes[environment]
        serving = {u.instance_id for u in before.upstreams}
        good = await region.app_server(200)
        runner.addresses.update({"app:slow": good.address, "app:v3": good.address})
        runner.held.add("app:slow")  # placed, never reported running: the rollout waits in its sanity tests
        running = await region.request(region.rollout(environment, "app:slow"))
        await eventually(lambda: runner.latest and "app:slow" in {i.image for i in runner.latest.instances},
                         what="the cancelled release's instance placed")

        cancel = await _cancel(region, running.deployment_id)

        finished = await region.events.finished(running.deployment_id)
        assert (finished.success, finished.error) == (False, CANCELLED)
        assert f"Deployment failed: {CANCELLED}" in log_of(region, running.deployment_id)
        await eventually(lambda: runner.desired_instance_ids() == serving,
                         what="the cancelled release's instance removed from the runner's desired state")
        assert ingress.routes[environment] == before
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert [u["instance_id"] for u in listed["upstreams"]] == [str(i) for i in serving]

        # The cancel again (redelivered, or sent twice) changes nothing more.
        await region.send(cancel.model_copy(update={"id": uuid4()}))
        await region.handled(cancellations_consumer(region.name), EVENTS.name)
        # The container starts after all and the environment deploys again: the cancelled rollout
        # goes no further, and the next one is not held up by it.
        runner.held.clear()
        following = await region.request(region.rollout(environment, "app:v3"))
        assert (await region.events.finished(following.deployment_id)).success
        steps = [p.step for p in region.events.of(RolloutProgressed, running.deployment_id)]
        assert steps[-1] == "sanity tests"  # never finalizing
        assert len(region.events.of(RolloutFinished, running.deployment_id)) == 1
        assert {i.image for i in runner.latest.instances} == {"app:v3"}


async def test_cancelling_after_the_routes_moved_moves_them_back(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller(region.settings(routes_applied_timeout_seconds=60)) as api:
        await _serve(region, runner, environment)
        before = ingress.routes[environment]
        good = await region.app_server(200)
        runner.addresses["app:next"] = good.address
        ingress.applying = False  # the rollout waits in finalizing for its routes to be applied
        request = await region.request(region.rollout(environment, "app:next"))
        await eventually(lambda: ingress.received[-1].revision == before.revision + 1,
                         what="the routes moved to the new instance")

        await _cancel(region, request.deployment_id)

        finished = await region.events.finished(request.deployment_id)
        assert (finished.success, finished.error) == (False, CANCELLED)
        moved_back = ingress.received[-1]
        assert (moved_back.revision, moved_back.upstreams) == (before.revision + 2, before.upstreams)
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert [u["instance_id"] for u in listed["upstreams"]] == [str(u.instance_id) for u in before.upstreams]
        await eventually(lambda: runner.desired_instance_ids() == {u.instance_id for u in before.upstreams},
                         what="the new instance removed from the runner's desired state")


async def test_a_cancel_that_arrives_before_the_request_makes_it_end_failed(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        await _serve(region, runner, environment)
        before = ingress.routes[environment]
        serving = runner.desired_instance_ids()
        request = region.rollout(environment, "app:v2")
        await _cancel(region, request.deployment_id)
        await region.handled(cancellations_consumer(region.name), EVENTS.name)

        await region.request(request)

        finished = await region.events.finished(request.deployment_id)
        assert (finished.success, finished.error) == (False, CANCELLED)
        assert f"Deployment failed: {CANCELLED}" in log_of(region, request.deployment_id)
        assert region.events.of(RolloutProgressed, request.deployment_id) == []
        assert runner.desired_instance_ids() == serving
        assert ingress.routes[environment] == before
        assert routes_of(await api.get("/internal/v1/routes"))[str(environment)]["revision"] == before.revision


async def test_cancelling_a_queued_rollout_ends_it_and_the_running_one_goes_on(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    good = await region.app_server(200)
    runner.addresses.update({"app:slow": good.address, "app:v2": good.address})
    runner.held.add("app:slow")

    async with region.controller():
        running = await region.request(region.rollout(environment, "app:slow"))
        queued = await region.request(region.rollout(environment, "app:v2"))
        await eventually(lambda: runner.desired_instance_ids(), what="the running rollout's instance placed")

        await _cancel(region, queued.deployment_id)

        finished = await region.events.finished(queued.deployment_id)
        assert (finished.success, finished.error) == (False, CANCELLED)
        assert region.events.of(RolloutProgressed, queued.deployment_id) == []
        runner.held.clear()
        assert (await region.events.finished(running.deployment_id)).success
        assert {i.image for i in runner.latest.instances} == {"app:slow"}
        assert [u.instance_id for u in ingress.routes[environment].upstreams] == list(runner.desired_instance_ids())


async def test_a_cancel_after_the_rollout_succeeded_changes_nothing(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller():
        request = await _serve(region, runner, environment)
        before = ingress.routes[environment]
        serving = runner.desired_instance_ids()

        await _cancel(region, request.deployment_id)
        await region.handled(cancellations_consumer(region.name), EVENTS.name)
        # Sent after the cancel was handled: once its route arrives, anything the cancel announced has too.
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=["www.shop.example.test"]))
        await eventually(lambda: ingress.routes[environment].hosts == ["www.shop.example.test"],
                         what="the marker handled")

        assert len(region.events.of(RolloutFinished, request.deployment_id)) == 1
        assert not any("cancel" in line.lower() for line in log_of(region, request.deployment_id))
        assert ingress.routes[environment].upstreams == before.upstreams
        assert runner.desired_instance_ids() == serving


async def test_a_cancel_once_the_new_release_carries_the_traffic_comes_too_late(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller(region.settings(drain_seconds=3)):
        await _serve(region, runner, environment)
        good = await region.app_server(200)
        runner.addresses["app:v2"] = good.address
        request = await region.request(region.rollout(environment, "app:v2"))
        await eventually(lambda: any(line.startswith("Finalizing: draining")
                                     for line in log_of(region, request.deployment_id)),
                         what="the old instance draining")

        await _cancel(region, request.deployment_id)

        finished = await region.events.finished(request.deployment_id)
        assert finished.success, finished.error
        await eventually(lambda: {i.image for i in runner.latest.instances} == {"app:v2"},
                         what="the old instance stopped")
        assert {u.instance_id for u in ingress.routes[environment].upstreams} == runner.desired_instance_ids()
