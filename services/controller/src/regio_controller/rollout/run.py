"""One deployment's rollout from its current step to the end, and how it ends."""
import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import RolloutFinished, RolloutProgressed, utcnow

from ..db import repository
from ..db.models import Instance, Release, Rollout
from ..domain.errors import RolloutEnded, RolloutFailed
from ..domain.states import (
    ACTIVE_STATES,
    UNFINISHED_ROLLOUT_STATES,
    InstanceState,
    RolloutState,
)
from ..routes.table import routes_changed
from .context import RolloutContext
from .guard import lock_unfinished
from .steps import Step, steps_from

log = logging.getLogger(__name__)


async def run_rollout(ctx: RolloutContext, deployment_id: UUID) -> None:
    """Runs the rollout's remaining steps. A step's RolloutFailed ends it failed; RolloutEnded
    (it was ended from outside) stops it as it is; any other exception leaves it running
    in the database, for the worker to resume."""
    async with ctx.sessions() as session:
        rollout = await repository.get_rollout(session, deployment_id)
        if rollout is None or rollout.state not in UNFINISHED_ROLLOUT_STATES:
            return
        release = await repository.get_release(session, rollout.release_id)
    try:
        for step in steps_from(rollout.step):
            if rollout.step != step.name:
                await _announce(ctx, rollout, step)
            await step.run(ctx, rollout, release)
        await _succeed(ctx, rollout, release)
    except RolloutFailed as e:
        log.info("rollout %s failed: %s", deployment_id, e.reason)
        await fail_rollout(ctx, deployment_id, e.reason)
    except RolloutEnded:
        log.info("rollout %s was ended while it ran (its environment was retired or it was cancelled)",
                 deployment_id)


async def _announce(ctx: RolloutContext, rollout: Rollout, step: Step) -> None:
    async with ctx.sessions() as session, session.begin():
        stored = await lock_unfinished(session, rollout.deployment_id)
        stored.state = RolloutState.RUNNING
        stored.step = step.name
        await ctx.outbox.add(session, RolloutProgressed(deployment_id=rollout.deployment_id, step=step.name,
                                                        percent=step.percent))
        await ctx.log(session, rollout.deployment_id, f"{step.title}…")
    rollout.step = step.name


async def _succeed(ctx: RolloutContext, rollout: Rollout, release: Release) -> None:
    async with ctx.sessions() as session, session.begin():
        stored = await lock_unfinished(session, rollout.deployment_id)
        stored.state = RolloutState.SUCCEEDED
        stored.finished_at = utcnow()
        # From now on the healer keeps the workload's count of instances of the release healthy.
        # Scaling commands set that count; only the first rollout sets it from its request.
        workload = await repository.lock_workload(session, rollout.environment_id)
        if workload.instances is None:
            workload.instances = rollout.instances
        workload.dedicated_to = rollout.dedicated_to
        await ctx.log(session, rollout.deployment_id,
                      f"Release {release.id} serves the environment on {rollout.instances} instance(s)")
        await ctx.outbox.add(session, RolloutFinished(deployment_id=rollout.deployment_id,
                                                      environment_id=rollout.environment_id, success=True))


async def fail_rollout(ctx: RolloutContext, deployment_id: UUID, reason: str) -> None:
    """Ends a rollout failed: its new instances are removed, and whatever served before
    keeps serving. If the routes had already moved to the new instances, they move back."""
    async with ctx.sessions() as session, session.begin():
        new = await end_failed(session, ctx, deployment_id, reason)
    await ctx.desired.publish_many(i.runner for i in new)


async def end_failed(session: AsyncSession, ctx: RolloutContext, deployment_id: UUID, reason: str) -> list[Instance]:
    """fail_rollout in the caller's transaction. Returns the instances it removed: their runners'
    desired state is to be written once the transaction is committed."""
    rollout = await repository.get_rollout(session, deployment_id, lock=True)
    if rollout is None or rollout.state not in UNFINISHED_ROLLOUT_STATES:
        return []
    new = await repository.deployment_instances(session, deployment_id, ACTIVE_STATES)
    await repository.move_instances(session, [i.id for i in new], InstanceState.FAILED)
    if rollout.route_revision is not None:
        workload = await repository.lock_workload(session, rollout.environment_id)
        if workload.current_deployment_id == deployment_id:
            workload.current_release_id = rollout.previous_release_id
            workload.current_deployment_id = rollout.previous_deployment_id
            workload.route_revision += 1
            previous = await repository.healthy_instances(session, rollout.previous_deployment_id)
            await ctx.outbox.add(session, routes_changed(workload, previous))
            await ctx.log(session, deployment_id,
                          f"Routes moved back to the {len(previous)} previous instance(s) "
                          f"(route revision {workload.route_revision})")
    rollout.state = RolloutState.FAILED
    rollout.error = reason
    rollout.finished_at = utcnow()
    await ctx.log(session, deployment_id, f"Deployment failed: {reason}")
    await ctx.outbox.add(session, RolloutFinished(deployment_id=deployment_id,
                                                  environment_id=rollout.environment_id, success=False,
                                                  error=reason))
    return new
