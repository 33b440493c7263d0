"""Commands about an environment outside its deployments: its hosts change, or it is
deleted (retired). Against real Postgres and NATS, with the runner agent and the ingress
played by their test doubles (see conftest.py)."""
from uuid import uuid4

from regio_common.messages import (
    DeploymentLogAppended,
    EnvironmentHostsChanged,
    EnvironmentRetired,
    RolloutFinished,
    RolloutProgressed,
)
from regio_controller.messaging.consumers import environments_consumer

from .conftest import eventually

DELETED = "the environment was deleted"


def routes_of(response) -> dict:
    assert response.status_code == 200, response.text
    return {r["environment_id"]: r for r in response.json()}


async def test_retiring_an_environment_stops_its_instances_and_empties_its_route(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    retired, kept = uuid4(), uuid4()

    async with region.controller() as api:
        for environment, host in ((retired, "shop.example.test"), (kept, "blog.example.test")):
            request = await region.request(region.rollout(environment, "app:v1", hosts=[host], instances=2))
            finished = await region.events.finished(request.deployment_id)
            assert finished.success, finished.error
        kept_instances = {u.instance_id for u in ingress.routes[kept].upstreams}
        before = ingress.routes[retired]

        await region.send(EnvironmentRetired(environment_id=retired))

        await eventually(lambda: runner.desired_instance_ids() == kept_instances,
                         what="the retired environment's instances removed from the runner's desired state")
        emptied = await eventually(lambda: ingress.routes[retired].revision > before.revision
                                   and ingress.routes[retired], what="the retired environment's route emptied")
        assert (emptied.hosts, emptied.upstreams, emptied.revision) == ([], [], before.revision + 1)
        assert set(routes_of(await api.get("/internal/v1/routes"))) == {str(kept)}
        runners = (await api.get("/internal/v1/runners")).json()
        assert [(r["name"], r["instances"], r["memory_used_mb"]) for r in runners] == [("r1", 2, 1024)]

        # Told again (an application's deletion follows its environment's), or about an environment
        # it never ran: nothing happens. A hosts change sent after them shows they were handled.
        await region.send(EnvironmentRetired(environment_id=retired))
        await region.send(EnvironmentRetired(environment_id=uuid4()))
        await region.send(EnvironmentHostsChanged(environment_id=kept, hosts=["www.blog.example.test"]))
        await eventually(lambda: ingress.routes[kept].hosts == ["www.blog.example.test"], what="the marker handled")
        assert [r.revision for r in ingress.received if r.environment_id == retired] == [before.revision,
                                                                                          before.revision + 1]
        assert {r.environment_id for r in ingress.received} == {retired, kept}

        # A rollout requested before the deletion but arriving after it does not bring the environment back.
        late = await region.request(region.rollout(retired, "app:v1"))
        finished = await region.events.finished(late.deployment_id)
        assert (finished.success, finished.error) == (False, DELETED)
        assert region.events.of(RolloutProgressed, late.deployment_id) == []
        assert set(routes_of(await api.get("/internal/v1/routes"))) == {str(kept)}
        assert runner.desired_instance_ids() == kept_instances


async def test_an_environment_that_moved_away_leaves_no_tombstone_and_may_come_back(region):
    """A migration to this region rolled back: the environment's instances and route go, as at a
    deletion, but a later migration may roll it out here again."""
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    environment = uuid4()

    async with region.controller():
        first = await region.request(region.rollout(environment, "app:v1", hosts=["moving.example.test"]))
        assert (await region.events.finished(first.deployment_id)).success
        before = ingress.routes[environment]

        await region.send(EnvironmentRetired(environment_id=environment, moved_away=True))

        await eventually(lambda: runner.desired_instance_ids() == set(), what="its instances removed")
        emptied = await eventually(lambda: ingress.routes[environment].revision > before.revision
                                   and ingress.routes[environment], what="its route emptied")
        assert (emptied.hosts, emptied.upstreams) == ([], [])
        again = await region.request(region.rollout(environment, "app:v1", hosts=["moving.example.test"]))
        finished = await region.events.finished(again.deployment_id)
        assert finished.success, finished.error
        assert ingress.routes[environment].hosts == ["moving.example.test"]


async def test_retiring_during_a_rollout_fails_it_and_the_queued_one_and_nothing_of_them_stays(region):
    runner = await region.runner("r1", memory_mb=4096)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses.update({"app:v1": good.address, "app:slow": good.address, "app:v3": good.address})
    environment, other = uuid4(), uuid4()

    async with region.controller() as api:
        first = await region.request(region.rollout(environment, "app:v1"))
        assert (await region.events.finished(first.deployment_id)).success
        served = ingress.routes[environment]
        runner.held.add("app:slow")  # its instance is placed but not reported running: the rollout waits
        running = await region.request(region.rollout(environment, "app:slow"))
        queued = await region.request(region.rollout(environment, "app:v3"))
        await eventually(lambda: runner.latest and "app:slow" in {i.image for i in runner.latest.instances},
                         what="the slow release's instance placed")

        await region.send(EnvironmentRetired(environment_id=environment))

        for request in (running, queued):
            finished = await region.events.finished(request.deployment_id)
            assert (finished.success, finished.error) == (False, DELETED)
            log = [line for m in region.events.of(DeploymentLogAppended, request.deployment_id) for line in m.lines]
            assert f"Deployment failed: {DELETED}" in log
        await eventually(lambda: runner.latest.instances == [], what="every instance of the environment removed")
        emptied = await eventually(lambda: ingress.routes[environment].revision > served.revision
                                   and ingress.routes[environment], what="the environment's route emptied")
        assert (emptied.hosts, emptied.upstreams) == ([], [])

        # The slow container starts after all, and another environment rolls out on the same runner:
        # the retired rollouts place, route and announce nothing more.
        runner.held.clear()
        elsewhere = await region.request(region.rollout(other, "app:v3", hosts=["other.example.test"]))
        assert (await region.events.finished(elsewhere.deployment_id)).success
        assert {i.environment_id for i in runner.latest.instances} == {other}
        # Announced up to where it was retired (scaling or sanity tests, as the timing fell), never further.
        steps = [p.step for p in region.events.of(RolloutProgressed, running.deployment_id)]
        assert steps in (["release commands", "scaling"], ["release commands", "scaling", "sanity tests"])
        assert region.events.of(RolloutProgressed, queued.deployment_id) == []
        assert len(region.events.of(RolloutFinished, running.deployment_id)) == 1
        assert [r.revision for r in ingress.received if r.environment_id == environment] == [served.revision,
                                                                                              emptied.revision]
        assert set(routes_of(await api.get("/internal/v1/routes"))) == {str(other)}


async def test_changed_hosts_are_routed_to_the_serving_instances_without_a_deployment(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    environment = uuid4()

    async with region.controller() as api:
        first = await region.request(region.rollout(environment, "app:v1", hosts=["shop.example.test"]))
        assert (await region.events.finished(first.deployment_id)).success
        before = ingress.routes[environment]
        placed = runner.desired_instance_ids()

        hosts = ["shop.example.test", "www.shop.example.test"]
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts))

        changed = await eventually(lambda: ingress.routes[environment].revision > before.revision
                                   and ingress.routes[environment], what="the new hosts routed")
        assert (changed.hosts, changed.upstreams, changed.revision) == (hosts, before.upstreams, before.revision + 1)
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert (listed["hosts"], listed["revision"]) == (hosts, changed.revision)
        assert runner.desired_instance_ids() == placed  # the same instances: no deployment happened
        assert {p.deployment_id for p in region.events.of(RolloutProgressed)} == {first.deployment_id}

        # The same hosts again, or hosts of an environment never rolled out, change no route.
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts))
        await region.send(EnvironmentHostsChanged(environment_id=uuid4(), hosts=["elsewhere.example.test"]))
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=["www.shop.example.test"]))
        last = await eventually(lambda: ingress.routes[environment].hosts == ["www.shop.example.test"]
                                and ingress.routes[environment], what="the last hosts routed")
        assert last.revision == before.revision + 2
        assert {r.environment_id for r in ingress.received} == {environment}


async def test_a_change_of_redirects_alone_is_routed_under_a_new_revision(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    environment = uuid4()
    hosts = ["shop.example.test"]

    async with region.controller() as api:
        first = await region.request(region.rollout(environment, "app:v1", hosts=hosts))
        assert (await region.events.finished(first.deployment_id)).success
        before = ingress.routes[environment]
        assert (before.redirect_hosts, before.https_redirect) == ([], False)

        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts,
                                                  redirect_hosts=["old-shop.example.test"]))
        redirected = await eventually(lambda: ingress.routes[environment].revision > before.revision
                                      and ingress.routes[environment], what="the redirect domain routed")
        assert (redirected.hosts, redirected.redirect_hosts, redirected.https_redirect) == (
            hosts, ["old-shop.example.test"], False)
        assert (redirected.upstreams, redirected.revision) == (before.upstreams, before.revision + 1)

        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts,
                                                  redirect_hosts=["old-shop.example.test"], https_redirect=True))
        secured = await eventually(lambda: ingress.routes[environment].revision > redirected.revision
                                   and ingress.routes[environment], what="the HTTPS redirect routed")
        assert (secured.hosts, secured.redirect_hosts, secured.https_redirect) == (
            hosts, ["old-shop.example.test"], True)
        assert secured.revision == redirected.revision + 1
        listed = routes_of(await api.get("/internal/v1/routes"))[str(environment)]
        assert (listed["hosts"], listed["redirect_hosts"], listed["https_redirect"], listed["revision"]) == (
            hosts, ["old-shop.example.test"], True, secured.revision)
        assert runner.desired_instance_ids() == {u.instance_id for u in before.upstreams}  # no deployment happened

        # The same routing again changes nothing: the next route seen is the marker's.
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts,
                                                  redirect_hosts=["old-shop.example.test"], https_redirect=True))
        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=hosts))
        last = await eventually(lambda: ingress.routes[environment].revision > secured.revision
                                and ingress.routes[environment], what="the marker routed")
        assert (last.redirect_hosts, last.https_redirect, last.revision) == ([], False, secured.revision + 1)


async def test_hosts_changed_during_a_rollout_are_the_ones_it_routes_until_the_next_rollout(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses.update({"app:slow": good.address, "app:v2": good.address})
    runner.held.add("app:slow")
    environment = uuid4()

    async with region.controller():
        request = await region.request(region.rollout(environment, "app:slow", hosts=["old.example.test"]))
        await eventually(lambda: runner.desired_instance_ids(), what="the instance placed")

        await region.send(EnvironmentHostsChanged(environment_id=environment, hosts=["new.example.test"],
                                                  redirect_hosts=["old.example.test"], https_redirect=True))
        await region.handled(environments_consumer(region.name))
        runner.held.clear()

        assert (await region.events.finished(request.deployment_id)).success
        routed = ingress.routes[environment]
        assert (routed.hosts, routed.redirect_hosts, routed.https_redirect) == (
            ["new.example.test"], ["old.example.test"], True)

        # The next rollout's request carries the hosts as they are then: they win.
        second = await region.request(region.rollout(environment, "app:v2", hosts=["next.example.test"]))
        assert (await region.events.finished(second.deployment_id)).success
        routed = ingress.routes[environment]
        assert (routed.hosts, routed.redirect_hosts, routed.https_redirect) == (["next.example.test"], [], False)
