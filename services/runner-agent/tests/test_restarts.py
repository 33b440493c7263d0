"""Instances that exit, against the real Docker Engine, NATS and Postgres: restarted after a
growing delay, each exit and restart said in the environment's runtime log and reported in
the heartbeat; and one that runs out of memory takes nothing from its neighbour."""
import asyncio

import httpx

from regio_common.runtime_logs import PLATFORM

from .test_agent import _running, answer, observed
from .test_log_shipping import lines_of


def platform_lines(lines, instance) -> list[str]:
    return [line.message for line in lines if line.service == PLATFORM and line.instance == instance.instance_id]


async def reported(region, runner, instance_id):
    heartbeat = await region.heartbeat(runner)
    for seen in heartbeat.instances if heartbeat else []:
        if seen.instance_id == instance_id:
            return seen
    return None


async def test_an_instance_that_keeps_exiting_is_restarted_ever_later_and_the_log_says_so(
    region, start_agent, runner_name, app_image, eventually
):
    instance = region.instance(app_image, EXIT_CODE="3")
    short = str(instance.instance_id)[:8]
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])

        async def restarted_twice():
            seen = await reported(region, runner_name, instance.instance_id)
            return seen if seen is not None and seen.restarts >= 2 else None

        seen = await eventually(restarted_twice)
        assert seen.last_exit == "exit code 3"

        async def said_twice():
            lines = platform_lines(await lines_of(region, instance), instance)
            return lines if f"instance {short} restarting in 2s (restart 2)" in lines else None

        lines = await eventually(said_twice)
        started = f"instance {short} started on {runner_name}"
        exited = f"instance {short} exited with code 3"
        assert lines[:6] == [started, exited, f"instance {short} restarting in 1s (restart 1)",
                             started, exited, f"instance {short} restarting in 2s (restart 2)"]


async def test_an_instance_out_of_memory_is_restarted_while_its_neighbour_keeps_serving(
    region, start_agent, runner_name, app_image, eventually
):
    # Two environments' instances of 64 MB on one runner; one asks for 1 GB.
    hungry = region.instance(app_image, GREETING="hungry")
    neighbour = region.instance(app_image, GREETING="neighbour")
    short = str(hungry.instance_id)[:8]
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [hungry, neighbour])
        first = await eventually(lambda: _running(region, runner_name, hungry.instance_id))
        calm = await eventually(lambda: _running(region, runner_name, neighbour.instance_id))
        assert await eventually(lambda: answer(calm.address)) == "neighbour"  # serving, before the test begins

        answers: list[str | None] = []
        stop = asyncio.Event()

        async def keep_asking() -> None:
            """The neighbour's visitors, all along."""
            async with httpx.AsyncClient(timeout=10) as client:
                while not stop.is_set():
                    try:
                        response = await client.get(f"http://{calm.address}/")
                        answers.append(response.text if response.status_code == 200 else None)
                    except httpx.HTTPError as e:
                        answers.append(repr(e))
                    await asyncio.sleep(0.05)

        async def feed(address: str) -> None:
            """Once it answers (it is up), ask it for more memory than it may have."""
            await eventually(lambda: answer(address))
            async with httpx.AsyncClient(timeout=10) as client:
                try:
                    await client.get(f"http://{address}/oom")
                except httpx.HTTPError:
                    pass  # killed while answering: the point

        async def restarted(times: int):
            seen = await _running(region, runner_name, hungry.instance_id)
            return seen if seen is not None and seen.restarts >= times else None

        visitors = asyncio.create_task(keep_asking())
        try:
            await feed(first.address)
            again = await eventually(lambda: restarted(1), timeout=60)
            assert again.last_exit == "exit code 137, out of memory"
            await feed(again.address)
            await eventually(lambda: restarted(2), timeout=60)
        finally:
            stop.set()
            await visitors

        heartbeat = await region.heartbeat(runner_name)
        assert observed(heartbeat, hungry.instance_id).last_exit == "exit code 137, out of memory"
        assert observed(heartbeat, neighbour.instance_id).restarts == 0
        assert answers and answers == ["neighbour"] * len(answers)

        async def said():
            lines = platform_lines(await lines_of(region, hungry), hungry)
            return lines if f"instance {short} restarting in 2s (restart 2)" in lines else None

        lines = await eventually(said)
        assert lines.count(f"instance {short} exited with code 137 (out of memory)") == 2
        assert f"instance {short} restarting in 1s (restart 1)" in lines
