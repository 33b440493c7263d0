"""Builds with steps that take time: the log arrives while the build runs, and a build
that runs too long is stopped. They need a base image with a shell (deploy/base-images)."""
import asyncio
from uuid import uuid4

from regio_common.messages import BuildFinished


async def test_log_lines_arrive_while_the_build_runs(builder, publish, build_request, events, make_repository,
                                                     app_files, base_image):
    marker = uuid4().hex[:8]
    repository = make_repository(app_files(
        f"FROM {base_image}\nRUN echo first-{marker} && sleep 3 && echo second-{marker}\n"
    ))
    request = build_request(repository)

    await publish(request)
    async with asyncio.timeout(60):
        while not any(f"first-{marker}" == line for line in events.log(request.deployment_id)):
            await asyncio.sleep(0.05)

    # The first line is in the deployment log while the step is still sleeping.
    assert not any(f"second-{marker}" == line for line in events.log(request.deployment_id))
    assert not events.of(BuildFinished, request.deployment_id)
    finished = await events.finished(request.deployment_id)
    assert finished.success
    assert f"second-{marker}" in events.log(request.deployment_id)


async def test_a_build_running_too_long_is_stopped(start_builder, publish, build_request, events,
                                                   make_repository, app_files, base_image, docker_api):
    marker = uuid4().hex[:8]
    repository = make_repository(app_files(f"FROM {base_image}\nRUN echo {marker} && sleep 120\n"))
    request = build_request(repository)

    async with start_builder(build_timeout_seconds=5):
        await publish(request)
        finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert finished.error == "docker build did not finish within 5 seconds"
    assert "Build failed: docker build did not finish within 5 seconds" in events.log(request.deployment_id)
    # The Engine cancelled the step: its container does not keep running.
    async with asyncio.timeout(30):
        while [c for c in docker_api.containers(all=True) if marker in c["Command"]]:
            await asyncio.sleep(0.5)
