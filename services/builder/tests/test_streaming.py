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
