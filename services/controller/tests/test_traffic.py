"""EnvironmentTrafficSet: a migration's cut-over holds an environment's requests at the
ingress, serves them again, or forwards its hosts to the region it moved to. Against real
Postgres and NATS, with the runner agent and the ingress played by their doubles (conftest):
what the control panel sees (EnvironmentTrafficChanged), what the ingress is told to carry
(RoutesChanged, and the polled route list), what the runners are told to run."""
import time
from datetime import timedelta
from uuid import UUID, uuid4

from regio_common.messages import (
    EnvironmentScaled,
    EnvironmentTrafficChanged,
    EnvironmentTrafficSet,
    Traffic,
    utcnow,
)

from .conftest import eventually

HOST = "shop.example.test"
FORWARD_TO = "10.20.30.40:8780"


async def serving(region, environment, runner, instances=1) -> str:
    """app:v1 serving the environment; returns its instances' address."""
    app = await region.app_server(200)
    runner.addresses["app:v1"] = app.address
    request = await region.request(region.rollout(environment, "app:v1", instances=instances, hosts=[HOST]))
    finished = await region.events.finished(request.deployment_id)
    assert finished.success, finished.error
    return app.address


async def set_traffic(region, environment, mode, **fields) -> EnvironmentTrafficSet:
    return await region.send(EnvironmentTrafficSet(environment_id=environment, change_id=uuid4(), mode=mode, **fields))


def reports(region, change: EnvironmentTrafficSet) -> list[EnvironmentTrafficChanged]:
    return [m for m in region.events.of(EnvironmentTrafficChanged) if m.change_id == change.change_id]


async def reported(region, change: EnvironmentTrafficSet, timeout: float = 15) -> EnvironmentTrafficChanged:
    found = await eventually(lambda: reports(region, change), timeout, f"the {change.mode} reported")
    return found[0]


def listed(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {r["environment_id"]: r for r in response.json()}


def forward(environment: UUID, until: float, **fields) -> dict:
    return dict(forward_to=FORWARD_TO, hosts=[HOST, "www.shop.example.test"],
                forward_until=utcnow() + timedelta(seconds=until), **fields)


async def test_hold_is_reported_once_nothing_is_in_flight_and_serve_routes_to_the_instances_again(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller() as api:
        address = await serving(region, environment, runner)
        before = ingress.routes[environment]
        region.ingress_api.in_flight[address] = 1  # a slow request still running on the instance

        sent_at = time.monotonic()
        hold = await set_traffic(region, environment, Traffic.HOLD)
        held = await eventually(lambda: ingress.routes[environment].revision > before.revision
                                and ingress.routes[environment], what="the held route")
        assert (held.held, held.upstreams, held.hosts) == (True, [], [HOST])
        assert listed(await api.get("/internal/v1/routes"))[str(environment)]["held"] is True
        await eventually(lambda: time.monotonic() - sent_at > 1.5, what="a moment")
        assert reports(region, hold) == []  # not while a request is in flight to the instance

        region.ingress_api.in_flight[address] = 0
        report = await reported(region, hold)
        print(f"HOLD reported {time.monotonic() - sent_at:.2f}s after the command (request in flight for 1.5s)")
        assert (report.environment_id, report.mode, report.error) == (environment, Traffic.HOLD, None)
        assert {i.instance_id for i in runner.latest.instances} == {u.instance_id for u in before.upstreams}

        serve = await set_traffic(region, environment, Traffic.SERVE)
        report = await reported(region, serve)
        assert (report.mode, report.error) == (Traffic.SERVE, None)
        route = ingress.routes[environment]
        assert (route.held, route.upstreams) == (False, before.upstreams)


async def test_hold_alone_is_reported_within_a_second_or_two(region):
    runner = await region.runner("r1", memory_mb=4096)
    await region.ingress()
    environment = uuid4()
    async with region.controller():
        await serving(region, environment, runner)
        sent_at = time.monotonic()
        hold = await set_traffic(region, environment, Traffic.HOLD)
        await reported(region, hold)
        took = time.monotonic() - sent_at
    print(f"HOLD command to EnvironmentTrafficChanged: {took:.2f}s")
    assert took < 3


async def test_a_hold_outlasting_the_drain_bound_is_reported_with_an_error_and_stays(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller(region.settings(traffic_hold_drain_seconds=1.0)):
        address = await serving(region, environment, runner)
        region.ingress_api.in_flight[address] = 2
        hold = await set_traffic(region, environment, Traffic.HOLD)
        report = await reported(region, hold)
        assert report.error == "2 request(s) still in flight to the instances after 1s"
        assert ingress.routes[environment].held


async def test_a_hold_survives_a_restart_and_the_healer_keeps_it(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await serving(region, environment, runner)
        hold = await set_traffic(region, environment, Traffic.HOLD)
        await reported(region, hold)

    async with region.controller() as api:
        assert listed(await api.get("/internal/v1/routes"))[str(environment)]["held"] is True
        # The healer adds an instance and publishes the route again: still held.
        revision = ingress.routes[environment].revision
        await region.send(EnvironmentScaled(environment_id=environment, instances=2))
        await eventually(lambda: len(runner.desired_instance_ids()) == 2, what="a second instance placed")
        await eventually(lambda: ingress.routes[environment].revision > revision, what="the route published again")
        assert all(r.held and r.upstreams == [] for r in ingress.received
                   if r.environment_id == environment and r.revision > revision)

        # The same change asked again (a new message, the same change id): reported again, nothing
        # else changes.
        revision = ingress.routes[environment].revision
        await region.send(hold.model_copy(update={"id": uuid4()}))
        await eventually(lambda: len(reports(region, hold)) == 2, what="the hold reported again")
        assert ingress.routes[environment].revision == revision

        serve = await set_traffic(region, environment, Traffic.SERVE)
        await reported(region, serve)
        await eventually(lambda: len(ingress.routes[environment].upstreams) == 2, what="both instances routed")
        assert not ingress.routes[environment].held


async def test_forward_stops_the_instances_sends_the_hosts_to_the_other_region_and_ends(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment, other = uuid4(), uuid4()
    async with region.controller():
        await serving(region, environment, runner)
        app = await region.app_server(200)
        runner.addresses["app:other"] = app.address
        kept = await region.request(region.rollout(other, "app:other", hosts=["blog.example.test"]))
        assert (await region.events.finished(kept.deployment_id)).success
        kept_instances = {u.instance_id for u in ingress.routes[other].upstreams}

        hold = await set_traffic(region, environment, Traffic.HOLD)
        await reported(region, hold)
        moved = await set_traffic(region, environment, Traffic.FORWARD, **forward(environment, until=6))
        report = await reported(region, moved)
        assert (report.mode, report.error) == (Traffic.FORWARD, None)
        route = ingress.routes[environment]
        assert (route.held, route.hosts, [u.address for u in route.upstreams], route.redirect_hosts) == (
            False, [HOST, "www.shop.example.test"], [FORWARD_TO], [])
        await eventually(lambda: runner.desired_instance_ids() == kept_instances,
                         what="the forwarded environment's instances stopped")

    # Still forwarded after a restart, and the healer does not bring the instances back.
    async with region.controller() as api:
        assert [u["address"] for u in listed(await api.get("/internal/v1/routes"))[str(environment)]["upstreams"]] \
            == [FORWARD_TO]
        # A SERVE after the forward cannot bring it back either.
        late = await set_traffic(region, environment, Traffic.SERVE)
        assert (await reported(region, late)).error == f"the environment is forwarded to {FORWARD_TO} already"
        assert runner.desired_instance_ids() == kept_instances

        # At forward_until the route is emptied and the environment forgotten here.
        forwarded = ingress.routes[environment].revision
        emptied = await eventually(lambda: ingress.routes[environment].revision > forwarded
                                   and ingress.routes[environment], timeout=15, what="the forward ended")
        assert (emptied.hosts, emptied.upstreams) == ([], [])
        assert set(listed(await api.get("/internal/v1/routes"))) == {str(other)}
        assert runner.desired_instance_ids() == kept_instances
        # Unknown here now: a traffic change is answered with an error.
        after = await set_traffic(region, environment, Traffic.HOLD)
        assert (await reported(region, after)).error == "the environment serves nothing in this region"


async def test_unknown_environments_and_bad_forwards_are_answered_with_an_error_naming_the_field(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await serving(region, environment, runner)
        revision = ingress.routes[environment].revision
        # An environment of another region (or none at all) is not held here.
        elsewhere = await set_traffic(region, uuid4(), Traffic.HOLD)
        assert (await reported(region, elsewhere)).error == "the environment serves nothing in this region"
        cases = {
            "forward_to: '{http.request.host}:80' is not host:port": forward(environment, 60) | {
                "forward_to": "{http.request.host}:80"},
            "forward_to: 'ingress.example:0' is not host:port": forward(environment, 60) | {
                "forward_to": "ingress.example:0"},
            "forward_to: an address host:port is required": forward(environment, 60) | {"forward_to": None},
            "hosts: at least one host to forward is required": forward(environment, 60) | {"hosts": []},
            "hosts: 'shop example' is not a host name": forward(environment, 60) | {"hosts": ["shop example"]},
            "hosts: at most 500": forward(environment, 60) | {"hosts": [f"h{i}.example" for i in range(501)]},
            "forward_until: a time with its zone is required": forward(environment, 60) | {"forward_until": None},
        }
        for error, fields in cases.items():
            change = await set_traffic(region, environment, Traffic.FORWARD, **fields)
            assert (await reported(region, change)).error == error
        # Another environment's host (maybe another organisation's) is not taken over by a forward.
        app = await region.app_server(200)
        runner.addresses["app:blog"] = app.address
        blog = await region.request(region.rollout(uuid4(), "app:blog", hosts=["blog.example.test"],
                                                   redirect_hosts=["www.blog.example.test"]))
        assert (await region.events.finished(blog.deployment_id)).success
        for taken in ("blog.example.test", "WWW.blog.example.test"):
            change = await set_traffic(region, environment, Traffic.FORWARD,
                                       **forward(environment, 60) | {"hosts": [HOST, taken]})
            assert (await reported(region, change)).error == \
                f"hosts: {taken.lower()} served by another environment here"
        wrong = await set_traffic(region, environment, "pause")
        assert (await reported(region, wrong)).error == "mode: one of serve, hold, forward"
        # None of them changed what the environment's hosts are routed to.
        assert ingress.routes[environment].revision == revision
        assert len(runner.desired_instance_ids()) == 2  # its own and the blog's


async def test_a_rollout_during_a_hold_keeps_the_hold(region):
    # The control panel refuses deployments during a migration; one arriving all the same
    # must not release the held requests to the instances.
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    environment = uuid4()
    async with region.controller():
        await serving(region, environment, runner)
        hold = await set_traffic(region, environment, Traffic.HOLD)
        await reported(region, hold)
        held_at = ingress.routes[environment].revision
        app = await region.app_server(200)
        runner.addresses["app:v2"] = app.address
        request = await region.request(region.rollout(environment, "app:v2", hosts=[HOST]))
        finished = await region.events.finished(request.deployment_id)
        assert finished.success, finished.error
        later = [r for r in ingress.received if r.environment_id == environment and r.revision > held_at]
        assert later and all(r.held and r.upstreams == [] for r in later)

        serve = await set_traffic(region, environment, Traffic.SERVE)
        await reported(region, serve)
        assert [u.address for u in ingress.routes[environment].upstreams] == [app.address]
