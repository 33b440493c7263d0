"""One-off jobs (release commands) against the real Docker Engine, NATS and Postgres: a job
runs once in a container of its release, its output reaches the deployment log, and its
runner reports how it ended."""
import asyncio
from uuid import UUID

from regio_common.messages import DeploymentLogAppended, decode, subject_for
from regio_common.runners import JobState
from regio_runner.docker_engine import LABEL_JOB, LABEL_RUNNER, job_container_name

from .test_agent import container_gone


class DeploymentLog:
    """Every line the region's deployment logs receive, by deployment.

    A plain subscription also sees the outbox's re-sends of a message whose publication an
    agent stopped before recording; JetStream drops those by message id, and so does the
    control panel's inbox. So does this log: a line shipped twice as two messages still counts twice."""

    def __init__(self):
        self.lines: dict[UUID, list[str]] = {}
        self._seen: set[UUID] = set()

    async def on_message(self, msg) -> None:
        message = decode(msg.headers, msg.data)
        if isinstance(message, DeploymentLogAppended) and message.id not in self._seen:
            self._seen.add(message.id)
            self.lines.setdefault(message.deployment_id, []).extend(message.lines)

    def of(self, deployment_id: UUID) -> list[str]:
        return self.lines.get(deployment_id, [])


async def deployment_log(region) -> DeploymentLog:
    log = DeploymentLog()
    await region.nc.subscribe(subject_for(DeploymentLogAppended, region.name), cb=log.on_message)
    return log


async def reported(region, runner, job_id, state=JobState.EXITED):
    heartbeat = await region.heartbeat(runner)
    for job in heartbeat.jobs if heartbeat else []:
        if job.job_id == job_id and job.state == state:
            return job
    return None


async def test_a_job_runs_once_its_output_reaches_the_deployment_log_and_its_exit_code_is_reported(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    log = await deployment_log(region)
    job = region.job(app_image, "migrate", 'echo "migrating $GREETING"; echo "a warning" >&2; echo; exit 3',
                     GREETING="the shop")
    async with start_agent(runner_name) as agent:
        await region.put_desired(runner_name, 1, [], jobs=[job])

        ended = await eventually(lambda: reported(region, runner_name, job.job_id))
        assert (ended.exit_code, ended.timed_out, ended.error) == (3, False, None)
        # Reported exited only once its output is on its way: by then every line is in the log.
        lines = await eventually(lambda: len(log.of(job.deployment_id)) == 3 and log.of(job.deployment_id))
        # With the release's environment; stdout keeps its order, but Docker may put the stderr
        # line anywhere between the two streams.
        assert sorted(lines) == ["[migrate] ", "[migrate] a warning", "[migrate] migrating the shop"]
        assert lines.index("[migrate] migrating the shop") < lines.index("[migrate] ")

        # The container: the release's image and the job's limits, marked as a job, no published port.
        container = docker_client.containers.get(job_container_name(job.job_id))
        assert container.labels[LABEL_JOB] == str(job.job_id)
        assert container.labels[LABEL_RUNNER] == runner_name
        assert "regio.instance" not in container.labels
        assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert container.attrs["HostConfig"]["PortBindings"] in ({}, None)
        assert agent.settings.network in container.attrs["NetworkSettings"]["Networks"]
        started_at = container.attrs["State"]["StartedAt"]

        # Desired still, it is not started again: a few passes later it is the same run.
        await asyncio.sleep(1.5)
        container.reload()
        assert (container.status, container.attrs["State"]["StartedAt"]) == ("exited", started_at)
        assert (await reported(region, runner_name, job.job_id)).exit_code == 3

        # No longer desired: its container goes.
        await region.put_desired(runner_name, 2, [])
        await eventually(lambda: container_gone(docker_client, job_container_name(job.job_id)))
        await eventually(lambda: _heartbeat_without_jobs(region, runner_name))

        # Desired again (a late write): the runner remembers it ran and does not run it a second time.
        await region.put_desired(runner_name, 3, [], jobs=[job])
        again = await eventually(lambda: reported(region, runner_name, job.job_id))
        assert again.exit_code == 3
        assert container_gone(docker_client, job_container_name(job.job_id))
        assert len(log.of(job.deployment_id)) == 3


async def test_a_job_past_its_timeout_is_killed_and_reported_timed_out(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    log = await deployment_log(region)
    job = region.job(app_image, "slow", "echo begun; sleep 60; echo never", timeout_seconds=1.5)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [], jobs=[job])
        await eventually(lambda: reported(region, runner_name, job.job_id, JobState.RUNNING))

        ended = await eventually(lambda: reported(region, runner_name, job.job_id))
        assert ended.timed_out
        assert ended.exit_code != 0
        container = docker_client.containers.get(job_container_name(job.job_id))
        assert container.status == "exited"
        assert await eventually(lambda: log.of(job.deployment_id)) == ["[slow] begun"]


async def test_a_restarted_agent_adopts_a_running_job_without_running_it_again(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    log = await deployment_log(region)
    # It waits for the test to let it finish, so it surely outlives the first agent.
    job = region.job(app_image, "seed", "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second")
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [], jobs=[job])
        await eventually(lambda: log.of(job.deployment_id) == ["[seed] first"])

    # The agent is gone; the job runs on and finishes meanwhile.
    container = docker_client.containers.get(job_container_name(job.job_id))
    started_at = container.attrs["State"]["StartedAt"]
    container.exec_run(["touch", "/tmp/go"])
    await eventually(lambda: container.reload() or container.status == "exited")

    async with start_agent(runner_name):
        ended = await eventually(lambda: reported(region, runner_name, job.job_id))
        assert (ended.exit_code, ended.timed_out) == (0, False)
        # Its output followed on from where the first agent left it, each line once.
        # (A generous wait: with every service suite running side by side the relay can lag.)
        await eventually(lambda: "[seed] second" in log.of(job.deployment_id), timeout=90)
        assert log.of(job.deployment_id) == ["[seed] first", "[seed] second"]
        container.reload()
        assert container.attrs["State"]["StartedAt"] == started_at


async def _heartbeat_without_jobs(region, runner):
    heartbeat = await region.heartbeat(runner)
    return heartbeat is not None and heartbeat.desired_revision >= 2 and not heartbeat.jobs


async def test_a_job_printing_long_lines_ships_them_all_in_messages_the_bus_takes(
    region, start_agent, runner_name, app_image, eventually
):
    """2.4 MB of output within one flush: batched by lines alone it was one message over the
    bus's limit, and the job's output (and everything the agent sent after it) stalled."""
    log = await deployment_log(region)
    job = region.job(app_image, "dump", "python3 -c 'for n in range(300): print(n, \"x\" * 7990)'")
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [], jobs=[job])
        ended = await eventually(lambda: reported(region, runner_name, job.job_id), timeout=60)
        assert ended.exit_code == 0
        lines = await eventually(lambda: len(log.of(job.deployment_id)) == 300 and log.of(job.deployment_id))
        assert lines == [f"[dump] {n} {'x' * 7990}" for n in range(300)]
