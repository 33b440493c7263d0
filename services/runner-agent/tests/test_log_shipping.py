"""An instance's output reaches its environment's log subject, with the platform's own
lines about its starts and exits, against the real Docker Engine and NATS."""
import httpx

from regio_common import runtime_logs
from regio_common.runners import ContainerState
from regio_common.runtime_logs import PLATFORM, WEB


async def lines_of(region, instance) -> list[runtime_logs.LogLine]:
    subject = runtime_logs.subject(region.name, instance.environment_id)
    return [line for _, line in await runtime_logs.read(region.js, subject)]


def said(lines, instance) -> list[str]:
    """What the instance printed, in order."""
    return [line.message for line in lines if line.service == WEB and line.instance == instance.instance_id]


def platform(lines) -> list[str]:
    return [line.message for line in lines if line.service == PLATFORM]


async def ask(address: str, path: str) -> bool:
    """Request a page; True once answered (the instance may not listen yet)."""
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"http://{address}{path}")).status_code == 200
        except httpx.HTTPError:
            return False


async def test_an_instances_output_and_its_exits_reach_its_environments_log(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance = region.instance(app_image)
    short = str(instance.instance_id)[:8]
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        first = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        await eventually(lambda: ask(first.address, "/hello"))

        async def printed(*expected):
            # Docker orders stdout against stderr only as it happens to read them.
            lines = await lines_of(region, instance)
            return lines if sorted(said(lines, instance)) == sorted(expected) else None

        # What it wrote to stdout and to stderr.
        lines = await eventually(lambda: printed("starting", "no problems so far", "/hello"))
        assert said(lines, instance)[-1] == "/hello"
        assert platform(lines) == [f"instance {short} started on {runner_name}"]
        assert lines[0].timestamp == first.started_at  # the start, then what the instance printed
        assert all(a.timestamp <= b.timestamp for a, b in zip(lines, lines[1:]))

        # Killed and restarted: the exit is in the log, and the first run's lines are not shipped again.
        docker_client.containers.get(first.container_id).kill()
        again = await eventually(lambda: _restarted(region, runner_name, instance.instance_id))
        lines = await eventually(lambda: printed("starting", "no problems so far", "/hello",
                                                 "starting", "no problems so far"))
        assert platform(lines) == [f"instance {short} started on {runner_name}",
                                   f"instance {short} exited with code 137",
                                   f"instance {short} restarting in 1s (restart 1)",
                                   f"instance {short} started on {runner_name}"]

        # Out of memory: the request never gets an answer.
        await eventually(lambda: ask(again.address, "/"))
        assert not await ask(again.address, "/oom")

        async def out_of_memory():
            return f"instance {short} exited with code 137 (out of memory)" in platform(await lines_of(region, instance))

        await eventually(out_of_memory)


async def test_output_written_while_the_agent_was_away_is_shipped_once_when_it_is_back(
    region, start_agent, runner_name, app_image, eventually
):
    instance = region.instance(app_image)
    short = str(instance.instance_id)[:8]

    async def printed_last(text):
        lines = await lines_of(region, instance)
        return lines if said(lines, instance)[-1:] == [text] else None

    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        await eventually(lambda: ask(seen.address, "/before"))
        await eventually(lambda: printed_last("/before"))

    assert await ask(seen.address, "/while-away")  # the container keeps running without its agent

    async with start_agent(runner_name):
        assert await ask(seen.address, "/after")
        lines = await eventually(lambda: printed_last("/after"))
        printed = said(lines, instance)
        assert sorted(printed[:2]) == ["no problems so far", "starting"]
        assert printed[2:] == ["/before", "/while-away", "/after"]
        assert platform(lines) == [
            f"instance {short} started on {runner_name}",
            f"runner agent on {runner_name} stopped; its instances' output follows when it is back",
            f"runner agent on {runner_name} started; following its instances again",
        ]

        # Removed from the desired state: stopped, said once.
        await region.put_desired(runner_name, 2, [])

        async def stopped():
            heartbeat = await region.heartbeat(runner_name)
            said_so = platform(await lines_of(region, instance))[-1] == f"instance {short} stopped"
            return said_so and heartbeat.desired_revision == 2 and not heartbeat.instances

        await eventually(stopped)
        assert platform(await lines_of(region, instance)).count(f"instance {short} stopped") == 1


async def _running(region, runner, instance_id):
    heartbeat = await region.heartbeat(runner)
    for seen in heartbeat.instances if heartbeat else []:
        if seen.instance_id == instance_id and seen.state == ContainerState.RUNNING and seen.address:
            return seen
    return None


async def _restarted(region, runner, instance_id):
    seen = await _running(region, runner, instance_id)
    return seen if seen and seen.restarts >= 1 else None
