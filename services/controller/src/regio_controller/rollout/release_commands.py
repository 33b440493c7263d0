"""The release commands step: before any instance of the new release starts, each of the
application's release commands (a database migration, say) runs in order, once, as a
one-off job of the release on a runner with capacity. A non-zero exit, a timeout or a lost
job fails the rollout, and the previous release keeps serving, untouched.

A job's row is written before the job reaches its runner's desired state, and its outcome
is recorded before the next command starts: a restarted controller skips the commands that
succeeded and waits for the one that still runs, so no command runs twice."""
import asyncio
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

from regio_common.messages import ReleaseCommand, utcnow
from regio_common.runners import JobState as ObservedState
from regio_common.runners import ObservedJob

from ..db import repository
from ..db.models import Job, Release, Rollout
from ..domain.errors import RolloutFailed
from ..domain.states import JobState
from ..scheduler.placement import NoCapacity, RunnerCapacity, may_run, place
from .context import RolloutContext
from .guard import lock_unfinished


@dataclass(frozen=True)
class Outcome:
    state: JobState
    exit_code: int | None = None
    error: str | None = None


def outcome_of(observed: ObservedJob) -> Outcome:
    """How a job its runner reports exited ended, in the controller's terms."""
    if observed.timed_out:
        return Outcome(JobState.TIMED_OUT, observed.exit_code, observed.error)
    if observed.exit_code == 0:
        return Outcome(JobState.SUCCEEDED, 0)
    return Outcome(JobState.FAILED, observed.exit_code, observed.error)


def verdict(job: Job, outcome: Outcome) -> str:
    """The deployment log's line on how a release command ended."""
    said = f"Release command {job.label}"
    if outcome.state == JobState.SUCCEEDED:
        return f"{said} succeeded"
    if outcome.state == JobState.TIMED_OUT:
        return f"{said} timed out after {job.timeout_seconds:g}s"
    if outcome.exit_code is None:
        return f"{said} failed: {outcome.error or 'it ended without an exit code'}"
    because = f": {outcome.error}" if outcome.error else ""
    return f"{said} failed with exit code {outcome.exit_code}{because}"


class ReleaseCommands:
    """Run the application's release commands in order, each in a one-off container of the release."""

    name = "release commands"
    percent = 55
    title = "Release commands"

    async def run(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> None:
        commands = [ReleaseCommand.model_validate(c) for c in rollout.release_commands or []]
        if not commands:
            return
        for position, command in enumerate(commands):
            job = await self._start(ctx, rollout, release, position, command)
            if job.state == JobState.RUNNING:
                outcome = await self._wait(ctx, job)
                await self._record(ctx, rollout, job, outcome)
            else:  # ended before a controller restart
                outcome = Outcome(JobState(job.state), job.exit_code, job.error)
            if outcome.state != JobState.SUCCEEDED:
                line = verdict(job, outcome)
                raise RolloutFailed(line[0].lower() + line[1:])

    async def _start(self, ctx: RolloutContext, rollout: Rollout, release: Release, position: int,
                     command: ReleaseCommand) -> Job:
        """The command's job: the one started before a restart, or a new one placed on a runner."""
        async with ctx.sessions() as session, session.begin():
            await lock_unfinished(session, rollout.deployment_id)
            job = (await repository.deployment_jobs(session, rollout.deployment_id)).get(position)
            if job is not None:
                return job
            runners = [r for r in await repository.lock_ready_runners(session)
                       if may_run(r.labels, ctx.settings.region, rollout.dedicated_to)]
            usage = await repository.memory_in_use(session, rollout.environment_id)
            capacities = [RunnerCapacity(r.name, r.memory_mb, *usage.get(r.name, (0, 0, 0))) for r in runners]
            try:
                [runner] = place(capacities, 1, release.memory_mb, env_bytes=len(release.sealed_env))
            except NoCapacity as e:
                lacking = (f"room for this release's environment ({e.env_bytes} bytes sealed)"
                           if e.env_bytes is not None else f"{release.memory_mb} MB free")
                raise RolloutFailed(f"no runner in region {ctx.settings.region} has {lacking} "
                                    f"for release command {command.label}")
            job = repository.job_row(
                job_id=uuid4(), deployment_id=rollout.deployment_id, environment_id=rollout.environment_id,
                release_id=release.id, position=position, label=command.label, command=command.command,
                runner=runner, timeout_seconds=rollout.release_command_timeout_seconds)
            session.add(job)
            await session.flush()
            await session.refresh(job, ["created_at"])
            await ctx.log(session, rollout.deployment_id,
                          f"Release command {command.label}: running `{command.command}` on runner {runner}")
        await ctx.desired.publish_many([job.runner])
        return job

    async def _wait(self, ctx: RolloutContext, job: Job) -> Outcome:
        """How the job ended, once its runner reports it exited (its output is shipped by then)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The runner kills the job at its timeout; this only ends the wait for a runner that
        # never reports the job, e.g. one that cannot reach the engine. Counted from the job's
        # creation, so a controller restart does not extend it.
        limit = job.timeout_seconds + ctx.settings.instance_start_timeout_seconds
        deadline = job.created_at + timedelta(seconds=limit)
        while True:
            observed = ctx.registry.observed_job(job.id)
            if observed is not None and observed.state == ObservedState.EXITED:
                return outcome_of(observed)
            # Give the registry one loss interval to hear from the runner after a controller restart.
            if loop.time() - started > ctx.settings.runner_lost_seconds and ctx.registry.is_lost(job.runner):
                return Outcome(JobState.FAILED, error=f"runner {job.runner} was lost while it ran")
            remaining = (deadline - utcnow()).total_seconds()
            if remaining <= 0:
                return Outcome(JobState.FAILED,
                               error=f"runner {job.runner} did not report it finished within {limit:g}s")
            await ctx.registry.wait_for_change(min(1.0, remaining))

    async def _record(self, ctx: RolloutContext, rollout: Rollout, job: Job, outcome: Outcome) -> None:
        """Stores how the job ended and takes it off its runner."""
        async with ctx.sessions() as session, session.begin():
            await lock_unfinished(session, rollout.deployment_id)
            if await repository.finish_job(session, job.id, outcome.state, outcome.exit_code, outcome.error):
                await ctx.log(session, rollout.deployment_id, verdict(job, outcome))
        await ctx.desired.publish_many([job.runner])
