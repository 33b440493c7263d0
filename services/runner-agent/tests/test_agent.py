"""The runner agent against the real Docker Engine, NATS and Postgres."""
import asyncio
import os
from datetime import datetime
from uuid import uuid4

import httpx
from docker.errors import NotFound
from sqlalchemy import select

from regio_common import bus, db
from regio_common.runners import ContainerState
from regio_runner.db.models import ManagedContainer
from regio_runner.docker_engine import LABEL_RUNNER, LABEL_SCOPE, DockerEngine, container_name


def observed(heartbeat, instance_id, state=ContainerState.RUNNING):
    """The instance's entry in a heartbeat if it is in ``state`` (running ones with an address)."""
    if heartbeat is None:
        return None
    for instance in heartbeat.instances:
        if instance.instance_id == instance_id and instance.state == state:
            if state != ContainerState.RUNNING or instance.address:
                return instance
    return None


async def answer(address: str) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"http://{address}/")
        return response.text if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


def container_gone(docker_client, name: str) -> bool:
    try:
        docker_client.containers.get(name)
        return False
    except NotFound:
        return True


async def test_a_desired_instance_runs_answers_http_and_gets_its_unsealed_env(
    region, start_agent, runner_name, app_image, docker_client, database_url, eventually
):
    instance = region.instance(app_image, GREETING="hello from the release")
    async with start_agent(runner_name) as agent:
        await region.put_desired(runner_name, 1, [instance])

        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        body = await eventually(lambda: answer(seen.address))
        assert body == "hello from the release"
        assert seen.address.startswith("127.0.0.1:")

        heartbeat = await region.heartbeat(runner_name)
        assert heartbeat.desired_revision == 1
        assert heartbeat.memory_mb == agent.settings.memory_mb and heartbeat.address == "127.0.0.1"
        assert seen.environment_id == instance.environment_id and seen.release_id == instance.release_id
        assert seen.restarts == 0 and seen.started_at is not None

        # The container carries the platform's labels and the plan's limits.
        container = docker_client.containers.get(container_name(instance.instance_id))
        assert container.id == seen.container_id
        assert container.labels[LABEL_RUNNER] == runner_name
        assert container.labels["regio.release"] == str(instance.release_id)
        host_config = container.attrs["HostConfig"]
        assert host_config["Memory"] == 64 * 1024 * 1024
        assert host_config["NanoCpus"] == 250_000_000
        assert host_config["RestartPolicy"]["Name"] in ("no", "")
        assert agent.settings.network in container.attrs["NetworkSettings"]["Networks"]

        # The agent's own record of what it manages.
        engine = db.make_engine(database_url)
        try:
            async with db.make_sessionmaker(engine)() as session:
                row = await session.get(ManagedContainer, (runner_name, instance.instance_id))
            assert row.container_id == container.id and row.state == "running" and row.restarts == 0
        finally:
            await engine.dispose()

        # The internal API serves the same observed state, to other services only.
        async with agent.client() as client:
            assert (await client.get("/internal/v1/instances")).status_code == 401
            wrong = await client.get("/internal/v1/instances", headers={"X-Regio-Service-Token": "nope"})
            assert wrong.status_code == 401
            response = await client.get("/internal/v1/instances",
                                        headers={"X-Regio-Service-Token": agent.settings.service_token})
            assert response.status_code == 200
            listed = response.json()
            assert listed["runner"] == runner_name
            assert [i["container_id"] for i in listed["instances"]] == [container.id]


async def test_an_instance_removed_from_desired_is_stopped_and_removed(
    region, start_agent, runner_name, app_image, docker_client, database_url, eventually
):
    instance = region.instance(app_image)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        await eventually(lambda: _running(region, runner_name, instance.instance_id))

        await region.put_desired(runner_name, 2, [])

        async def gone():
            heartbeat = await region.heartbeat(runner_name)
            return (heartbeat.desired_revision == 2 and not heartbeat.instances
                    and container_gone(docker_client, container_name(instance.instance_id)))

        await eventually(gone)

        engine = db.make_engine(database_url)
        try:
            async with db.make_sessionmaker(engine)() as session:
                assert (await session.scalars(select(ManagedContainer))).all() == []
        finally:
            await engine.dispose()


async def test_deleting_the_runners_desired_state_stops_its_instances(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance = region.instance(app_image)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        await eventually(lambda: _running(region, runner_name, instance.instance_id))

        kv = await region.js.key_value(bus.runner_desired_bucket(region.name))
        await kv.delete(runner_name)

        async def gone():
            heartbeat = await region.heartbeat(runner_name)
            return not heartbeat.instances and container_gone(docker_client, container_name(instance.instance_id))

        await eventually(gone)


async def test_a_killed_container_is_restarted_and_the_restart_counted(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance = region.instance(app_image, GREETING="back again")
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        first = await eventually(lambda: _running(region, runner_name, instance.instance_id))

        docker_client.containers.get(first.container_id).kill()

        async def restarted():
            seen = await _running(region, runner_name, instance.instance_id)
            return seen if seen and seen.restarts >= 1 else None

        again = await eventually(restarted)
        assert again.restarts == 1
        assert again.container_id == first.container_id  # the same container, started again
        assert again.started_at > first.started_at
        assert await eventually(lambda: answer(again.address)) == "back again"


async def test_a_restarted_agent_adopts_running_containers_without_restarting_them(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance = region.instance(app_image)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        before = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        docker_client.containers.get(before.container_id).kill()
        before = await eventually(lambda: _restarted_once(region, runner_name, instance.instance_id))

    # The agent is gone; its container keeps serving.
    container = docker_client.containers.get(before.container_id)
    assert container.status == "running"

    async with start_agent(runner_name):
        async def heartbeat_from_new_agent():
            heartbeat = await region.heartbeat(runner_name)
            return heartbeat if heartbeat and heartbeat.sent_at > sent_before else None

        sent_before = (await region.heartbeat(runner_name)).sent_at
        heartbeat = await eventually(heartbeat_from_new_agent)
        after = observed(heartbeat, instance.instance_id)
        assert after is not None
        assert after.container_id == before.container_id
        assert after.started_at == before.started_at
        assert after.restarts == 1  # the count survives the agent's restart
        assert after.address == before.address
        await asyncio.sleep(1.5)  # a few more passes: still untouched
        container.reload()
        assert datetime.fromisoformat(container.attrs["State"]["StartedAt"]) == before.started_at
        assert container.status == "running"


async def test_containers_of_other_runners_are_left_alone(
    region, start_agent, runner_name, runners, app_image, docker_client, app_network, eventually
):
    other = f"test-runner-{uuid4().hex[:8]}"
    runners.append(other)
    labels = {LABEL_RUNNER: other, "regio.instance": str(uuid4()), "regio.environment": str(uuid4()),
              "regio.release": str(uuid4())}
    foreign = docker_client.containers.run(app_image, detach=True, labels=labels, environment={"PORT": "8000"},
                                           name=f"regio-{labels['regio.instance']}")
    # A container labelled for this runner that the controller does not want.
    stray_labels = {**labels, LABEL_RUNNER: runner_name, LABEL_SCOPE: "", "regio.instance": str(uuid4())}
    stray = docker_client.containers.run(app_image, detach=True, labels=stray_labels, environment={"PORT": "8000"})
    # A runner of the same name in another region installation on this engine.
    twin_labels = {**stray_labels, LABEL_SCOPE: "another-installation", "regio.instance": str(uuid4())}
    twin = docker_client.containers.run(app_image, detach=True, labels=twin_labels, environment={"PORT": "8000"})

    async with start_agent(runner_name):
        # Until the controller has written this runner's desired state, nothing is touched.
        heartbeat = await eventually(lambda: region.heartbeat(runner_name))
        assert [i.container_id for i in heartbeat.instances] == [stray.id]
        assert heartbeat.desired_revision == 0
        await asyncio.sleep(1)
        stray.reload()
        assert stray.status == "running"

        await region.put_desired(runner_name, 1, [])
        await eventually(lambda: container_gone(docker_client, stray.id))
        await asyncio.sleep(1)

    foreign.reload()
    assert foreign.status == "running"
    assert foreign.labels[LABEL_RUNNER] == other
    twin.reload()
    assert twin.status == "running"
    twin.remove(force=True)


async def test_a_slow_stop_does_not_hold_up_heartbeats_or_other_instances(
    region, start_agent, runner_name, app_image, eventually
):
    # The test application ignores SIGTERM (PID 1 without a handler), so its stop lasts the grace period.
    draining, fresh = region.instance(app_image), region.instance(app_image, GREETING="serving")
    async with start_agent(runner_name, stop_grace_seconds=5):
        await region.put_desired(runner_name, 1, [draining])
        await eventually(lambda: _running(region, runner_name, draining.instance_id))

        await region.put_desired(runner_name, 2, [fresh])
        await eventually(lambda: _state(region, runner_name, draining.instance_id, ContainerState.STOPPING),
                         timeout=5)
        heartbeats = [await region.heartbeat(runner_name)]
        while observed(heartbeats[-1], draining.instance_id, ContainerState.STOPPING):
            assert len(heartbeats) < 100, "the old instance never finished stopping"
            heartbeat = await region.heartbeat(runner_name)
            if not heartbeats or heartbeat.sent_at != heartbeats[-1].sent_at:
                heartbeats.append(heartbeat)
            await asyncio.sleep(0.1)

        # While the old instance drained, the new one started and heartbeats kept coming.
        while_draining = [h for h in heartbeats if observed(h, draining.instance_id, ContainerState.STOPPING)]
        assert len(while_draining) >= 4
        assert any(observed(h, fresh.instance_id) for h in while_draining)
        gaps = [(b.sent_at - a.sent_at).total_seconds() for a, b in zip(heartbeats, heartbeats[1:])]
        # A heartbeat held up by the stop would leave a gap of the whole 5 s grace period;
        # the bound leaves room for a loaded machine (the interval is 0.5 s).
        assert max(gaps) < 3.0

        async def drained():
            heartbeat = await region.heartbeat(runner_name)
            return [i.instance_id for i in heartbeat.instances] == [fresh.instance_id]

        await eventually(drained, timeout=15)
        seen = await _running(region, runner_name, fresh.instance_id)
        assert await eventually(lambda: answer(seen.address)) == "serving"


async def test_many_slow_stops_at_once_do_not_hold_up_a_new_instance(
    region, start_agent, runner_name, app_image, eventually
):
    # More stops than the threads asyncio lends by default (min(32, CPUs + 4)); each lasts the
    # grace period, since the test application ignores SIGTERM.
    count = min(32, (os.cpu_count() or 1) + 4) + 1
    draining = [region.instance(app_image) for _ in range(count)]
    fresh = region.instance(app_image, GREETING="serving")
    async with start_agent(runner_name, stop_grace_seconds=8):
        await region.put_desired(runner_name, 1, draining)

        async def all_running():
            heartbeat = await region.heartbeat(runner_name)
            return all(observed(heartbeat, i.instance_id) for i in draining)

        await eventually(all_running, timeout=60)

        await region.put_desired(runner_name, 2, [fresh])

        async def fresh_running():
            heartbeat = await region.heartbeat(runner_name)
            return heartbeat if observed(heartbeat, fresh.instance_id) else None

        # The new instance started while the old ones were stopping, not after most of them.
        heartbeat = await eventually(fresh_running)
        stopping = [i for i in draining if observed(heartbeat, i.instance_id, ContainerState.STOPPING)]
        assert len(stopping) > count // 2
        seen = observed(heartbeat, fresh.instance_id)
        assert await eventually(lambda: answer(seen.address)) == "serving"


def test_an_instance_being_started_is_listed_as_inspecting_it_would_tell(
    region, runner_name, app_image, app_network
):
    # The engine holds an inspect back until a start is over; the list alone tells the same
    # state and published port.
    instance = region.instance(app_image)
    engine = DockerEngine(runner_name, "127.0.0.1", app_network)
    try:
        engine.ensure_network()
        engine.run(instance, {"PORT": str(instance.port)})
        [inspected] = engine.list()
        [listed] = engine.list(starting={str(instance.instance_id)})
        assert (listed.container_id, listed.name, listed.labels, listed.state, listed.host_port) == \
               (inspected.container_id, inspected.name, inspected.labels, inspected.state, inspected.host_port)
        assert listed.state == ContainerState.RUNNING and listed.host_port is not None
    finally:
        engine.close()


async def _running(region, runner, instance_id):
    return observed(await region.heartbeat(runner), instance_id)


async def _state(region, runner, instance_id, state):
    return observed(await region.heartbeat(runner), instance_id, state)


async def _restarted_once(region, runner, instance_id):
    seen = await _running(region, runner, instance_id)
    return seen if seen and seen.restarts == 1 else None
