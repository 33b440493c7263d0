"""Hollow runners (scale tests and benchmarks only): everything a runner agent does but run
containers, against the real NATS and Postgres."""
import asyncio
import threading
from uuid import uuid4

from regio_common.runners import ContainerState, JobState
from regio_runner.hollow import HollowEngine
from regio_runner.hollow_fleet import HollowFleet
from regio_runner.settings import Settings

from .test_agent import answer, observed


async def test_a_hollow_container_answers_at_once_and_its_output_ends_when_it_is_removed(region):
    engine = HollowEngine("hollow-test", "127.0.0.1")
    try:
        instance = region.instance("no-such-image:1")
        container_id = engine.run(instance, {})
        [container] = engine.list()
        assert container.state == ContainerState.RUNNING and container.instance_id == instance.instance_id
        assert await answer(f"127.0.0.1:{container.host_port}") is not None

        output = engine.output(container_id, None, "all")
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(output))
        reader.start()
        engine.stop_and_remove(container_id, 10)
        await asyncio.to_thread(reader.join, 30)
        assert not reader.is_alive() and chunks == []
        assert engine.list() == []

        job = region.job("no-such-image:1", "migrate", "exit 3")
        job_container = engine.inspect(engine.run_job(job, {}))
        assert (job_container.state, job_container.exit_code) == (ContainerState.EXITED, 0)
        assert list(engine.output(job_container.container_id, None, "all")) == []
    finally:
        engine.close()


def test_runner_labels_and_hollowness_come_from_the_environment(monkeypatch):
    organisation = str(uuid4())
    monkeypatch.setenv("REGIO_RUNNER_LABELS", f'{{"organisation": "{organisation}", "zone": "a"}}')
    monkeypatch.setenv("REGIO_RUNNER_HOLLOW", "true")
    settings = Settings()
    assert settings.labels == {"organisation": organisation, "zone": "a"}
    assert settings.hollow is True


async def test_a_hollow_agent_reports_its_instances_running_and_its_jobs_done(
    region, start_agent, runner_name, eventually
):
    instance = region.instance("no-such-image:1")
    job = region.job("no-such-image:1", "migrate", "exit 3")
    async with start_agent(runner_name, hollow=True, labels={"zone": "a"}):
        await region.put_desired(runner_name, 1, [instance], jobs=[job])

        async def done():
            heartbeat = await region.heartbeat(runner_name)
            ran = observed(heartbeat, instance.instance_id)
            jobs = [j for j in heartbeat.jobs if j.state == JobState.EXITED] if heartbeat else []
            return (heartbeat, ran) if ran and jobs else None

        heartbeat, ran = await eventually(done)
        assert heartbeat.labels == {"zone": "a", "region": region.name, "hollow": "true"}
        assert await answer(ran.address) is not None
        assert [(j.job_id, j.exit_code) for j in heartbeat.jobs] == [(job.job_id, 0)]


async def test_a_real_runners_heartbeat_carries_its_region(region, start_agent, runner_name, eventually):
    organisation = str(uuid4())
    async with start_agent(runner_name, labels={"organisation": organisation}):
        heartbeat = await eventually(lambda: region.heartbeat(runner_name))
    assert heartbeat.labels == {"organisation": organisation, "region": region.name}


async def test_a_fleet_of_hollow_runners_runs_what_each_is_told_in_one_process(
    region, database_url, session_nats, nats_credentials, eventually
):
    prefix = f"hollow-{uuid4().hex[:6]}-"
    # The fleet's one NATS user: every runner key of the region, and nothing else.
    user, password = (await nats_credentials(region.name, [], hollow_fleet=True))["hollow-fleet"]
    settings = Settings(region=region.name, database_url=database_url, nats_url=session_nats.url, nats_user=user,
                        nats_password=password, region_key=region.key, memory_mb=16384, cpus=8, heartbeat_seconds=0.5)
    fleet = HollowFleet(settings, 20, prefix)
    told = {f"{prefix}{n}": [region.instance(f"app:{n}") for _ in range(n)] for n in (1, 2, 3)}
    # Written before the fleet starts for one runner, after for the others.
    first = f"{prefix}1"
    await region.put_desired(first, 1, told[first])
    await fleet.start()
    try:
        for runner, instances in told.items():
            if runner != first:
                await region.put_desired(runner, 1, instances)

        async def all_running():
            seen = []
            for runner, instances in told.items():
                heartbeat = await region.heartbeat(runner)
                running = [observed(heartbeat, i.instance_id) for i in instances]
                if not all(running):
                    return None
                seen.extend(running)
            return seen

        for seen in await eventually(all_running):
            assert await answer(seen.address) is not None

        # Every runner of the fleet heartbeats, with its own name and capacity, as hollow.
        async def all_heartbeating():
            heartbeats = [await region.heartbeat(f"{prefix}{n}") for n in range(1, 21)]
            return heartbeats if all(heartbeats) else None

        for n, heartbeat in enumerate(await eventually(all_heartbeating), start=1):
            assert heartbeat.runner == f"{prefix}{n}" and heartbeat.memory_mb == 16384 and heartbeat.cpus == 8
            assert heartbeat.labels == {"region": region.name, "hollow": "true"}
            assert len(heartbeat.instances) == len(told.get(heartbeat.runner, []))

        # Dropped from the desired state: gone.
        runner = f"{prefix}3"
        await region.put_desired(runner, 2, told[runner][:1])

        async def dropped():
            heartbeat = await region.heartbeat(runner)
            return heartbeat.desired_revision == 2 and [i.instance_id for i in heartbeat.instances] == [
                told[runner][0].instance_id]

        await eventually(dropped)
    finally:
        await fleet.stop()
