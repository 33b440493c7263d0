"""Release commands before scaling, against real Postgres and NATS, with the runner agent and
the ingress played by their test doubles (see conftest.py)."""
from uuid import uuid4

from regio_common.messages import (
    DeploymentLogAppended,
    ReleaseCommand,
    RolloutProgressed,
)

from .conftest import eventually
from .test_rollouts import _assert_previous_release_still_serves, _serve_first_release

MIGRATE = ReleaseCommand(label="migrate", command="python manage.py migrate")
SEED = ReleaseCommand(label="seed", command="python manage.py loaddata seed.json")


def log_of(region, deployment_id) -> list[str]:
    return [line for m in region.events.of(DeploymentLogAppended, deployment_id) for line in m.lines]


async def test_release_commands_run_in_order_in_the_release_before_any_instance_starts(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    environment = uuid4()

    async with region.controller():
        request = await region.request(region.rollout(environment, "app:v1", release_commands=[MIGRATE, SEED],
                                                      release_command_timeout_seconds=30))
        finished = await region.events.finished(request.deployment_id)
        assert finished.success, finished.error

        # Each ran once, in order, as a job of the release: its image, its environment, the plan's size.
        assert [(j.label, j.command) for j in runner.jobs] == [("migrate", MIGRATE.command),
                                                               ("seed", SEED.command)]
        for job in runner.jobs:
            assert (job.deployment_id, job.environment_id, job.release_id) == (
                request.deployment_id, environment, request.release_id)
            assert (job.image, job.sealed_env, job.memory_mb, job.timeout_seconds) == (
                "app:v1", request.sealed_env, 512, 30)
        # One at a time, and no instance of the release while one ran.
        assert all(len(d.jobs) <= 1 for d in runner.desired)
        assert not any(d.jobs and d.instances for d in runner.desired)
        assert runner.latest.jobs == []

        steps = [(p.step, p.percent) for p in region.events.of(RolloutProgressed, request.deployment_id)]
        assert steps[:2] == [("release commands", 55), ("scaling", 60)]
        log = log_of(region, request.deployment_id)
        assert log.index("Release command migrate succeeded") < log.index("Release command seed succeeded")
        assert log.index("Release command seed succeeded") < log.index("Scaling…")
        assert ingress.routes[environment].upstreams


async def test_a_failing_release_command_fails_the_deployment_and_the_previous_release_keeps_serving(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()

    async with region.controller() as api:
        before = await _serve_first_release(region, runner, ingress, environment)
        runner.job_exit_codes[MIGRATE.command] = 3

        request = await region.request(region.rollout(environment, "app:next", release_commands=[MIGRATE, SEED]))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert finished.error == "release command migrate failed with exit code 3"
        log = log_of(region, request.deployment_id)
        assert "Release command migrate failed with exit code 3" in log
        assert f"Deployment failed: {finished.error}" in log
        assert [j.label for j in runner.jobs if j.deployment_id == request.deployment_id] == ["migrate"]
        # Nothing of the new release was scaled or routed.
        assert not any(i.release_id == request.release_id for d in runner.desired for i in d.instances)
        assert [p.step for p in region.events.of(RolloutProgressed, request.deployment_id)] == ["release commands"]
        assert len(ingress.received) == 1
        await _assert_previous_release_still_serves(region, api, runner, ingress, environment, before)
        await eventually(lambda: runner.latest.jobs == [], what="the failed job removed from the runner")


async def test_a_release_command_past_its_timeout_fails_the_deployment(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    environment = uuid4()
    runner.timing_out.add(MIGRATE.command)

    async with region.controller():
        request = await region.request(region.rollout(environment, "app:v1", release_commands=[MIGRATE],
                                                      release_command_timeout_seconds=5))
        finished = await region.events.finished(request.deployment_id)

        assert not finished.success
        assert finished.error == "release command migrate timed out after 5s"
        assert "Release command migrate timed out after 5s" in log_of(region, request.deployment_id)
        assert runner.desired_instance_ids() == set()
        assert ingress.received == []


async def test_a_restarted_controller_waits_for_the_running_command_and_does_not_rerun_a_finished_one(region):
    runner = await region.runner("r1", memory_mb=2048)
    ingress = await region.ingress()
    good = await region.app_server(200)
    runner.addresses["app:v1"] = good.address
    runner.running.add(SEED.command)  # the second command takes its time
    environment = uuid4()

    async with region.controller():
        request = await region.request(region.rollout(environment, "app:v1", release_commands=[MIGRATE, SEED]))
        await eventually(lambda: [j.label for j in runner.jobs] == ["migrate", "seed"], what="seed started")

    async with region.controller():
        runner.running.clear()
        finished = await region.events.finished(request.deployment_id)

        assert finished.success, finished.error
        # The same two jobs: migrate was not run again, and the seed job that ran was waited for.
        assert [j.label for j in runner.jobs] == ["migrate", "seed"]
        log = log_of(region, request.deployment_id)
        assert log.count("Release command migrate succeeded") == 1
        assert log.count("Release command seed succeeded") == 1
        assert ingress.routes[environment].upstreams
