"""Scaling without a deployment, replacing the instances of lost and drained runners, restart
events and dedicated regions: the controller against real Postgres and NATS, with runner
agents and the ingress played by the doubles in conftest."""
from uuid import uuid4

from regio_common.messages import EnvironmentEvent, EnvironmentScaled, RolloutFinished

from .conftest import eventually


async def first_release(region, environment, runners, instances=1, **fields):
    """app:v1 serving ``environment`` on ``instances`` instances; returns its deployment id."""
    app = await region.app_server(200)
    for runner in runners:
        runner.addresses["app:v1"] = app.address
    request = await region.request(region.rollout(environment, "app:v1", instances=instances, **fields))
    finished = await region.events.finished(request.deployment_id)
    assert finished.success, finished.error
    return request.deployment_id


def upstreams(ingress, environment) -> set:
    route = ingress.routes.get(environment)
    return {u.instance_id for u in route.upstreams} if route else set()


def on(runner) -> set:
    return runner.desired_instance_ids()


def events(region, environment, reason=None) -> list[EnvironmentEvent]:
    return [e for e in region.events.of(EnvironmentEvent)
            if e.environment_id == environment and reason in (None, e.reason)]


async def test_scaling_adds_and_removes_instances_of_the_current_release_and_the_routes_follow(region):
    r1, r2 = await region.runner("r1", memory_mb=4096), await region.runner("r2", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1, r2])
        [first] = upstreams(ingress, environment)

        await region.send(EnvironmentScaled(environment_id=environment, instances=3))
        await eventually(lambda: len(upstreams(ingress, environment)) == 3, what="three instances routed")
        assert first in upstreams(ingress, environment)  # the one serving was never replaced
        assert (len(on(r1)), len(on(r2))) in ((2, 1), (1, 2))  # spread over both runners

        await region.send(EnvironmentScaled(environment_id=environment, instances=1))
        await eventually(lambda: len(upstreams(ingress, environment)) == 1, what="one instance routed")
        await eventually(lambda: len(on(r1) | on(r2)) == 1, what="the extra instances removed from runners")

    # The routes never went below what served before each change.
    counts = [len(c.upstreams) for c in ingress.received if c.environment_id == environment]
    assert min(counts) >= 1
    said = [e.message for e in events(region, environment)]
    assert "scaling from 1 to 3 instance(s)" in said and "scaling from 3 to 1 instance(s)" in said


async def test_a_lost_runners_instances_are_replaced_on_another_and_the_routes_follow(region):
    r1, r2 = await region.runner("r1", memory_mb=4096), await region.runner("r2", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1, r2], instances=2)
        assert on(r1) and on(r2)  # one each
        [lost] = on(r1)

        await r1.stop()  # its heartbeats stop: lost after runner_lost_seconds (5 s here)
        await eventually(lambda: len(upstreams(ingress, environment)) == 2 and lost not in upstreams(ingress, environment),
                         timeout=30, what="the lost runner's instance replaced in the routes")
        assert upstreams(ingress, environment) <= on(r2)

    assert any("runner r1 is lost" in e.message for e in events(region, environment, "moved"))


async def test_a_drained_runner_hands_its_instances_over_without_the_routes_going_empty(region):
    r1, r2 = await region.runner("r1", memory_mb=4096), await region.runner("r2", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller() as api:
        await first_release(region, environment, [r1, r2], instances=2)

        answer = await api.post("/internal/v1/runners/r1/drain")
        assert answer.status_code == 200 and answer.json()["draining"] is True
        await eventually(lambda: not on(r1) and len(upstreams(ingress, environment)) == 2, timeout=30,
                         what="r1 empty and two instances serving")
        assert upstreams(ingress, environment) <= on(r2)

        # A drained runner takes nothing new until it is back in service.
        await region.send(EnvironmentScaled(environment_id=environment, instances=3))
        await eventually(lambda: len(upstreams(ingress, environment)) == 3, what="three instances")
        assert not on(r1)
        assert (await api.post("/internal/v1/runners/r1/uncordon")).json()["cordoned"] is False
        assert (await api.post("/internal/v1/runners/nope/drain")).status_code == 404

    counts = [len(c.upstreams) for c in ingress.received if c.environment_id == environment]
    assert min(counts) >= 2


async def test_scaling_past_capacity_is_told_and_touches_nothing_running(region):
    r1 = await region.runner("r1", memory_mb=1024)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1])
        serving = upstreams(ingress, environment)

        await region.send(EnvironmentScaled(environment_id=environment, instances=4))
        [told] = await eventually(lambda: events(region, environment, "unplaceable"), what="the unplaceable event")
        assert told.message == ("3 instance(s) wanted but not placed: no runner of region "
                                f"{region.name} has 512 MB free (1 of 3 instance(s) fit)")
        assert upstreams(ingress, environment) == serving and len(on(r1)) == 1


async def test_a_restart_reported_by_a_runner_becomes_an_event_of_the_environment(region):
    r1 = await region.runner("r1", memory_mb=4096)
    await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1])
        r1.restarts["app:v1"] = 1
        [told] = await eventually(lambda: events(region, environment, "restarted"), what="the restart event")
    assert told.message.endswith("restarted on runner r1 after exit code 137, out of memory (restart 1)")


async def test_an_instance_restarted_at_a_new_port_leaves_the_routes_and_rejoins_them_there(region):
    """A runner restarts an exited container in place, and the engine publishes it on a new
    port: the routes must follow it, or they point at a port nothing answers (or another's)."""
    r1 = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1])
        [instance] = upstreams(ingress, environment)
        old = ingress.routes[environment].upstreams[0].address
        moved_to = await region.app_server(200)
        r1.addresses["app:v1"], r1.restarts["app:v1"] = moved_to.address, 1
        await eventually(lambda: [u.address for u in ingress.routes[environment].upstreams] == [moved_to.address],
                         what="the route at the new address")
        [told] = events(region, environment, "moved")
    assert upstreams(ingress, environment) == {instance}  # the same instance, checked again, not a replacement
    assert told.message.startswith(f"instance {instance} restarted at {moved_to.address}: it leaves the routes")
    # Between the two, the route had no instance: never the old port once the new one was known.
    addresses = [[u.address for u in c.upstreams] for c in ingress.received if c.environment_id == environment]
    assert addresses[-3:] == [[old], [], [moved_to.address]]


async def test_a_dedicated_regions_instances_go_only_on_its_organisations_runners(region):
    organisation = uuid4()
    public = await region.runner("public", memory_mb=8192)
    dedicated = await region.runner("dedicated", memory_mb=2048, labels={"organisation": str(organisation)})
    await region.ingress()
    async with region.controller():
        await first_release(region, uuid4(), [public, dedicated], instances=2, dedicated_to=organisation)
        assert len(on(dedicated)) == 2 and not on(public)

        # The public region's environments never land on the dedicated runner.
        await first_release(region, uuid4(), [public, dedicated], instances=2)
        assert len(on(public)) == 2 and len(on(dedicated)) == 2

        refused = await region.request(region.rollout(uuid4(), "app:v1", dedicated_to=uuid4()))
        finished = await region.events.finished(refused.deployment_id)
    assert not finished.success and "no runner of region" in finished.error and "dedicated to" in finished.error


async def test_a_controller_restarted_during_a_scale_up_ends_with_exactly_the_wanted_instances(region):
    r1, r2 = await region.runner("r1", memory_mb=8192), await region.runner("r2", memory_mb=8192)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await first_release(region, environment, [r1, r2])
        await region.send(EnvironmentScaled(environment_id=environment, instances=4))
        await eventually(lambda: len(on(r1) | on(r2)) > 1, what="the scale-up under way")
    # Stopped mid-way; a new controller process carries on from the database and the heartbeats.
    async with region.controller():
        await eventually(lambda: len(upstreams(ingress, environment)) == 4, timeout=30, what="four routed")
        await region.send(EnvironmentScaled(environment_id=environment, instances=4))  # a repeat changes nothing
    assert len(on(r1) | on(r2)) == 4
    assert not [m for m in region.events.of(RolloutFinished) if not m.success]
