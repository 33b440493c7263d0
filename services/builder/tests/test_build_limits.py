"""A build runs the repository's own code: each of its steps within the region's memory, CPU
and process limits, the whole within its time limit, and one over a limit fails saying which."""
import asyncio
from uuid import uuid4

import pytest

from regio_builder.build.docker_build import CPU_PERIOD
from regio_common import cgroups


@pytest.fixture
def step_container(docker_api):
    """Finds the running container of a build step by a token in its command."""

    async def find(token: str, timeout: float = 60) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for summary in docker_api.containers(filters={"status": "running"}):
                    if token in (summary.get("Command") or ""):
                        return docker_api.inspect_container(summary["Id"])
                await asyncio.sleep(0.2)

    return find


async def test_a_step_that_takes_more_memory_than_the_limit_fails_and_says_so(
        start_builder, publish, build_request, app_files, events, make_repository, base_image):
    # dd reads 400 MB into one buffer: written, not merely reserved, as a real build's memory would be.
    repository = make_repository(app_files(f"FROM {base_image}\nRUN dd if=/dev/zero of=/dev/null bs=400M count=1\n"))
    request = build_request(repository)

    async with start_builder(build_memory_mb=128):
        await publish(request)
        finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert finished.error.endswith("returned a non-zero code: 137: the step ran out of memory "
                                   "(a build step may use at most 128 MB)")
    assert f"Build failed: {finished.error}" in events.log(request.deployment_id)


async def test_a_build_past_its_time_limit_fails_and_its_steps_ran_within_the_limits(
        start_builder, publish, build_request, app_files, events, make_repository, base_image, step_container,
        docker_api):
    token = uuid4().hex
    repository = make_repository(app_files(f"FROM {base_image}\nRUN sleep 600 # {token}\n"))
    request = build_request(repository)

    async with start_builder(build_timeout_seconds=5, build_memory_mb=256, build_cpus=0.5):
        await publish(request)
        step = await step_container(token)
        finished = await events.finished(request.deployment_id)

    assert step["HostConfig"]["Memory"] == 256 * 1024 ** 2
    assert step["HostConfig"]["MemorySwap"] == 256 * 1024 ** 2
    assert (step["HostConfig"]["CpuPeriod"], step["HostConfig"]["CpuQuota"]) == (CPU_PERIOD, CPU_PERIOD // 2)
    assert not finished.success
    assert finished.error == "docker build exceeded the build time limit of 5 seconds"
    assert f"Build failed: {finished.error}" in events.log(request.deployment_id)
    # The Engine stopped the step when the builder hung up: nothing of the build runs on.
    async with asyncio.timeout(30):
        while docker_api.containers(filters={"id": step["Id"]}):
            await asyncio.sleep(0.5)


@pytest.fixture
def build_cgroup_parent():
    """A cgroup parent of the test's own, limited to 40 processes as `regio up` limits the region's."""
    parent = f"/regio-test-builds-{uuid4().hex[:8]}"
    try:
        cgroups.limit_pids(parent, 40)
    except OSError as e:
        pytest.skip(f"the cgroup hierarchy cannot be written here: {e}")
    yield parent
    cgroups.remove(parent)


async def test_a_step_that_forks_past_the_process_limit_fails(
        start_builder, publish, build_request, app_files, events, make_repository, base_image, build_cgroup_parent):
    # A hundred processes at once, where a fork bomb would make them without end.
    repository = make_repository(app_files(
        f"FROM {base_image}\nRUN for i in $(seq 100); do sleep 5 & done; wait; echo all forked\n"))
    request = build_request(repository)

    async with start_builder(build_cgroup_parent=build_cgroup_parent):
        await publish(request)
        finished = await events.finished(request.deployment_id)

    log = events.log(request.deployment_id)
    assert not finished.success, log
    assert "all forked" not in log
    # The shell's own "Cannot fork" (the step's echoed command says "forked", not this).
    assert any("cannot fork" in line.lower() for line in log), log
