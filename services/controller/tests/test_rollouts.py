"""Rollouts end to end against real Postgres and NATS, with the runner agent and the
ingress played by their test doubles (see conftest.py)."""
import asyncio
from uuid import uuid4

from regio_common.messages import (
    DeploymentLogAppended,
    RolloutProgressed,
    RoutesChanged,
)
from regio_controller.messaging.consumers import rollouts_consumer

from .conftest import eventually, eventually_async


def routes_of(response) -> dict:
    assert response.status_code == 200, response.text
    return {r["environment_id"]: r for r in response.json()}


async def test_rollout_places_tests_routes_and_replaces_the_previous_release(region):
    good = await region.app_server(200)
    runner = await region.runner("r1", memory_mb=2048)
    runner.addresses.update({"app:v1": good.address, "app:v2": good.address})
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        first = await region.request(region.rollout(environment, "app:v1", hosts=["shop.example.test"],
                                                     redirect_hosts=["old-shop.example.test"], https_redirect=True))
        finished = await region.events.finished(first.deployment_id)
        assert finished.success, finished.error

        # Scaling wrote the instance into the runner's desired state, with the release's image and secrets.
        placed = [i for d in runner.desired for i in d.instances if i.release_id == first.release_id]
        assert placed and placed[0].image == "app:v1" and placed[0].memory_mb == 512
        assert placed[0].sealed_env == first.sealed_env
        instance_id = placed[0].instance_id

        steps = [(p.step, p.percent) for p in region.events.of(RolloutProgressed, first.deployment_id)]
        assert steps == [("release commands", 55), ("scaling", 60), ("sanity tests", 75), ("finalizing", 90)]
        assert good.requests >= 1  # the sanity test reached the instance
        log = [line for m in region.events.of(DeploymentLogAppended, first.deployment_id) for line in m.lines]
        assert any("placed on runner r1" in line for line in log)

        # The ingress was told to route the hosts to the new instance, and to redirect the others.
        route = ingress.routes[environment]
        assert route.hosts == ["shop.example.test"]
        assert (route.redirect_hosts, route.https_redirect) == (["old-shop.example.test"], True)
        assert [(u.instance_id, u.address) for u in route.upstreams] == [(instance_id, good.address)]

        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert listed["revision"] == route.revision
        assert listed["upstreams"] == [{"instance_id": str(instance_id), "address": good.address}]
        assert (listed["redirect_hosts"], listed["https_redirect"]) == (["old-shop.example.test"], True)
        runners = (await api.get("/internal/v1/runners")).json()
        assert [(r["name"], r["state"], r["memory_used_mb"]) for r in runners] == [("r1", "ready", 512)]
        unauthorised = await api.get("/internal/v1/routes", headers={"X-Regio-Service-Token": "wrong"})
        assert unauthorised.status_code == 401

        # A new release takes over; the old instance is drained, then leaves the runner.
        second = await region.request(region.rollout(environment, "app:v2"))
        finished = await region.events.finished(second.deployment_id)
        assert finished.success, finished.error
        await eventually(lambda: runner.latest and [i.image for i in runner.latest.instances] == ["app:v2"],
                         what="the old instance removed from the runner's desired state")
        route = ingress.routes[environment]
        assert route.revision == listed["revision"] + 1
        assert (route.redirect_hosts, route.https_redirect) == ([], False)  # as the new request says
        assert [u.instance_id for u in route.upstreams] == list(runner.desired_instance_ids())
        assert instance_id not in {u.instance_id for u in route.upstreams}


async def _serve_first_release(region, runner, ingress, environment):
    good = await region.app_server(200)
    runner.addresses["app:good"] = good.address
    first = await region.request(region.rollout(environment, "app:good"))
    finished = await region.events.finished(first.deployment_id)
    assert finished.success, finished.error
    return ingress.routes[environment]


async def _assert_previous_release_still_serves(region, api, runner, ingress, environment, before):
    assert ingress.routes[environment] == before
    listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
    assert listed["revision"] == before.revision
    assert [u["instance_id"] for u in listed["upstreams"]] == [str(u.instance_id) for u in before.upstreams]
    # The failed instance leaves the runner's desired state; the serving one stays.
    await eventually(lambda: runner.desired_instance_ids() == {u.instance_id for u in before.upstreams},
                     what="the failed instance removed from the runner's desired state")


async def test_instance_answering_503_fails_the_rollout_and_the_previous_release_keeps_serving(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    broken = await region.app_server(503)
    runner.addresses["app:broken"] = broken.address

    async with region.controller() as api:
        before = await _serve_first_release(region, runner, ingress, environment)

        request = await region.request(region.rollout(environment, "app:broken", sanity_timeout_seconds=5))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert "sanity test failed" in finished.error and "HTTP 503" in finished.error
        log = [line for m in region.events.of(DeploymentLogAppended, request.deployment_id) for line in m.lines]
        assert f"Deployment failed: {finished.error}" in log
        assert broken.requests >= 1
        assert len(ingress.received) == 1  # the failed release was never routed
        await _assert_previous_release_still_serves(region, api, runner, ingress, environment, before)


async def test_a_slow_503_is_the_reason_given_even_when_the_last_probe_runs_out_of_time(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    # Each answer takes 1 s, so the fourth probe of a 4 s test is cut short by the deadline. (An
    # answer well inside the 2 s a probe may take: a loaded machine must not time them all out.)
    slow = await region.app_server(503, delay=1.0)
    runner.addresses["app:slow"] = slow.address

    async with region.controller():
        await _serve_first_release(region, runner, ingress, environment)

        request = await region.request(region.rollout(environment, "app:slow", sanity_timeout_seconds=4))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert "within 4s" in finished.error and "(last: HTTP 503)" in finished.error


async def test_instance_that_never_answers_fails_within_the_sanity_timeout(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    silent = await region.app_server(None)
    runner.addresses["app:silent"] = silent.address

    async with region.controller() as api:
        before = await _serve_first_release(region, runner, ingress, environment)

        request = await region.request(region.rollout(environment, "app:silent", sanity_timeout_seconds=1))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert "within 1s" in finished.error and "no answer" in finished.error
        await _assert_previous_release_still_serves(region, api, runner, ingress, environment, before)


async def test_instance_that_exits_fails_the_rollout_with_its_exit_code(region):
    runner = await region.runner("r1", memory_mb=2048)
    runner.exit_codes["app:crashing"] = 3
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        before = await _serve_first_release(region, runner, ingress, environment)

        request = await region.request(region.rollout(environment, "app:crashing"))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert "exited with code 3" in finished.error
        await _assert_previous_release_still_serves(region, api, runner, ingress, environment, before)


async def test_routes_move_back_when_the_ingress_does_not_apply_them(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    good = await region.app_server(200)
    runner.addresses["app:next"] = good.address

    async with region.controller(region.settings(routes_applied_timeout_seconds=1)) as api:
        before = await _serve_first_release(region, runner, ingress, environment)
        ingress.applying = False

        request = await region.request(region.rollout(environment, "app:next"))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert f"did not apply route revision {before.revision + 1}" in finished.error
        moved_back = ingress.received[-1]
        assert moved_back.revision == before.revision + 2
        assert moved_back.upstreams == before.upstreams
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert listed["revision"] == moved_back.revision
        assert [u["instance_id"] for u in listed["upstreams"]] == [str(u.instance_id) for u in before.upstreams]
        await eventually(lambda: runner.desired_instance_ids() == {u.instance_id for u in before.upstreams},
                         what="the new instance removed from the runner's desired state")


async def test_no_runner_with_capacity_fails_the_rollout_and_places_nothing(region):
    runner = await region.runner("small", memory_mb=256)
    await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        # The runner is known and ready: it is only too small.
        runners = await eventually_async(lambda: api.get("/internal/v1/runners"),
                                         lambda r: r.status_code == 200 and r.json(), "the runner registered")
        assert [(r["name"], r["state"], r["memory_mb"]) for r in runners.json()] == [("small", "ready", 256)]
        request = await region.request(region.rollout(environment, "app:big", memory_mb=512))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert finished.error == f"no runner of region {region.name} has 512 MB free (0 of 1 instance(s) fit)"
        assert region.events.of(RoutesChanged) == []
        assert runner.desired_instance_ids() == set()
        assert routes_of(await api.get("/internal/v1/routes")) == {}


async def test_restarted_controller_resumes_a_rollout_with_the_instances_it_placed(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    good = await region.app_server(200)
    runner.addresses["app:slow"] = good.address
    runner.held.add("app:slow")  # the container takes its time to start

    async with region.controller():
        request = await region.request(region.rollout(environment, "app:slow"))
        await eventually(lambda: runner.desired_instance_ids(), what="the instance placed")
    placed = runner.desired_instance_ids()
    assert region.events.of(RoutesChanged) == []

    async with region.controller() as api:
        runner.held.clear()
        finished = await region.events.finished(request.deployment_id)

        assert finished.success, finished.error
        assert {u.instance_id for u in ingress.routes[environment].upstreams} == placed
        assert runner.desired_instance_ids() == placed  # nothing placed twice
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert {u["instance_id"] for u in listed["upstreams"]} == {str(i) for i in placed}


async def test_rollouts_beyond_the_parallel_bound_wait_their_turn_and_all_succeed(region):
    """A burst of deploys runs a bounded number of rollouts at once, so the ones running keep
    the connections and the event loop they need to finish within their timeouts."""
    runner = await region.runner("r1", memory_mb=4096)
    await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:slow"] = good.address
    runner.held.add("app:slow")

    async with region.controller(region.settings(parallel_rollouts=2)):
        requests = [await region.request(region.rollout(uuid4(), "app:slow")) for _ in range(3)]
        await region.handled(rollouts_consumer(region.name))

        def started(request) -> bool:
            return bool(region.events.of(RolloutProgressed, request.deployment_id))

        def in_sanity_tests(request) -> bool:
            return any(p.step == "sanity tests" for p in region.events.of(RolloutProgressed, request.deployment_id))

        # Requests of different environments are recorded side by side: which two start is not told.
        await eventually(lambda: sum(map(in_sanity_tests, requests)) == 2,
                         what="two rollouts waiting in their sanity tests")
        await asyncio.sleep(1.5)  # three polls of the worker: room for a (wrong) third start
        assert sum(map(started, requests)) == 2

        runner.held.clear()
        for request in requests:
            assert (await region.events.finished(request.deployment_id)).success


async def test_environments_roll_out_in_parallel_and_each_environment_in_order(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses.update({"app:slow": good.address, "app:v2": good.address})
    runner.held.add("app:slow")
    busy, other = uuid4(), uuid4()

    async with region.controller():
        first = await region.request(region.rollout(busy, "app:slow"))
        second = await region.request(region.rollout(busy, "app:v2"))
        elsewhere = await region.request(region.rollout(other, "app:v2"))

        # Another environment is not held up by the slow one...
        assert (await region.events.finished(elsewhere.deployment_id)).success
        # ...but the same environment's next rollout waits for the one before it.
        assert region.events.of(RolloutProgressed, second.deployment_id) == []

        runner.held.clear()
        assert (await region.events.finished(first.deployment_id)).success
        assert (await region.events.finished(second.deployment_id)).success
        kinds = [(type(m).__name__, m.deployment_id) for m in region.events.messages
                 if hasattr(m, "deployment_id") and not isinstance(m, DeploymentLogAppended)]
        assert kinds.index(("RolloutFinished", first.deployment_id)) < kinds.index(
            ("RolloutProgressed", second.deployment_id))
        route = ingress.routes[busy]
        second_instances = {i.instance_id for i in runner.latest.instances if i.release_id == second.release_id}
        assert {u.instance_id for u in route.upstreams} == second_instances
