"""The steps of a rollout, in order. Each step is announced once (RolloutProgressed and a
log line), and each can run again from the top after a controller restart: it looks at
what the database says is done and does only the rest."""
import asyncio
from typing import ClassVar, Protocol

from ..db import repository
from ..db.models import Release, Rollout
from ..domain.errors import RolloutFailed
from ..domain.states import InstanceState
from ..routes.table import routes_changed
from ..scheduler.assign import assign
from .context import RolloutContext
from .drain import drain
from .guard import lock_unfinished
from .release_commands import ReleaseCommands
from .sanity import sanity_test


class Step(Protocol):
    name: ClassVar[str]
    percent: ClassVar[int]
    title: ClassVar[str]

    async def run(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> None: ...


class Scaling:
    """Place the release's instances on runners with capacity and tell those runners."""

    name = "scaling"
    percent = 60
    title = "Scaling"

    async def run(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> None:
        async with ctx.placing, ctx.sessions() as session, session.begin():
            await lock_unfinished(session, rollout.deployment_id)
            # Instances placed before a restart are kept: only the missing ones are placed.
            existing = await repository.deployment_instances(session, rollout.deployment_id)
            missing = rollout.instances - len(existing)
            placed = []
            if missing > 0:
                placed = await assign(session, region=ctx.settings.region,
                                      environment_id=rollout.environment_id, deployment_id=rollout.deployment_id,
                                      release=release, count=missing, dedicated_to=rollout.dedicated_to)
                await ctx.log(session, rollout.deployment_id,
                              *(f"Scaling: instance {i.id} ({release.memory_mb} MB, {release.cpus:g} CPU) "
                                f"placed on runner {i.runner}" for i in placed))
            affected = {i.runner for i in existing} | {i.runner for i in placed}
        await ctx.desired.publish_many(affected)


class SanityTests:
    """Each new instance must run and answer HTTP within the time limit."""

    name = "sanity tests"
    percent = 75
    title = "Sanity tests"

    async def run(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> None:
        async with ctx.sessions() as session:
            instances = await repository.deployment_instances(
                session, rollout.deployment_id,
                (InstanceState.PENDING, InstanceState.STARTING, InstanceState.RUNNING))
        try:
            async with asyncio.TaskGroup() as group:
                tests = [group.create_task(sanity_test(ctx, i, release, rollout.sanity_timeout_seconds))
                         for i in instances]
        except* RolloutFailed as failed:
            raise failed.exceptions[0]  # the first failure; the other tests were cancelled
        passed = [test.result() for test in tests]
        async with ctx.sessions() as session, session.begin():
            await lock_unfinished(session, rollout.deployment_id)
            # In id order, as heartbeat batches lock instances: no deadlock between the two.
            for p in sorted(passed, key=lambda p: p.instance.id):
                await repository.move_instances(session, [p.instance.id], InstanceState.RUNNING, address=p.address)
            await ctx.log(session, rollout.deployment_id,
                          *(f"Sanity tests: instance {p.instance.id} at {p.address} answered HTTP {p.status}"
                            for p in passed))


class Finalizing:
    """Route the environment's hosts to the new instances, then drain and stop the old ones."""

    name = "finalizing"
    percent = 90
    title = "Finalizing"

    async def run(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> None:
        revision = await self._route_to_new(ctx, rollout, release)
        timeout = ctx.settings.routes_applied_timeout_seconds
        if not await ctx.applied.wait(rollout.environment_id, revision, timeout):
            raise RolloutFailed(f"the ingress did not apply route revision {revision} within {timeout:g}s")
        # From here the new instances carry the traffic: what is left only retires the old ones.
        await self._retire_old(ctx, rollout, revision)

    async def _route_to_new(self, ctx: RolloutContext, rollout: Rollout, release: Release) -> int:
        async with ctx.sessions() as session, session.begin():
            stored = await lock_unfinished(session, rollout.deployment_id)
            if stored.route_revision is not None:
                return stored.route_revision  # routed before a restart
            new = await repository.deployment_instances(session, rollout.deployment_id,
                                                        (InstanceState.RUNNING, InstanceState.HEALTHY))
            if len(new) < rollout.instances or any(i.address is None for i in new):
                raise RolloutFailed(f"only {len(new)} of {rollout.instances} instances passed the sanity tests")
            healthy = await repository.move_instances(session, [i.id for i in new], InstanceState.HEALTHY)
            workload = await repository.lock_workload(session, rollout.environment_id)
            stored.previous_release_id = workload.current_release_id
            stored.previous_deployment_id = workload.current_deployment_id
            workload.current_release_id = release.id
            workload.current_deployment_id = rollout.deployment_id
            # A routing change since the request reached the stored row, not ``rollout``.
            workload.hosts = list(stored.hosts)
            workload.redirect_hosts = list(stored.redirect_hosts)
            workload.https_redirect = stored.https_redirect
            workload.route_revision += 1
            stored.route_revision = workload.route_revision
            await ctx.outbox.add(session, routes_changed(workload, healthy))
            hosts = ", ".join(workload.hosts) or "no hosts"
            await ctx.log(session, rollout.deployment_id,
                          f"Finalizing: routing {hosts} to {len(healthy)} new instance(s) "
                          f"(route revision {workload.route_revision})")
            return workload.route_revision

    async def _retire_old(self, ctx: RolloutContext, rollout: Rollout, revision: int) -> None:
        async with ctx.sessions() as session, session.begin():
            # Draining is where a cancel comes too late (rollout/cancellation.py): it must either
            # end the rollout before this, or find the routes applied, not both.
            await lock_unfinished(session, rollout.deployment_id)
            await repository.record_applied_revision(session, rollout.environment_id, revision)
            # Draining ones too: a drain a restart interrupted starts again, still bounded by the grace.
            old = await repository.other_instances(session, rollout.environment_id, rollout.deployment_id,
                                                   (InstanceState.RUNNING, InstanceState.HEALTHY,
                                                    InstanceState.DRAINING))
            draining = await repository.move_instances(session, [i.id for i in old], InstanceState.DRAINING)
            # Replacements the healer placed for the old release and that never served go at once.
            unstarted = await repository.other_instances(session, rollout.environment_id, rollout.deployment_id,
                                                         (InstanceState.PENDING, InstanceState.STARTING))
            unstarted = await repository.move_instances(session, [i.id for i in unstarted], InstanceState.STOPPED)
            if draining:
                await ctx.log(session, rollout.deployment_id,
                              f"Finalizing: draining {len(draining)} old instance(s) until no request is in "
                              f"flight to them, at most {ctx.settings.drain_grace_seconds:g}s")
        drained = await drain(ctx, rollout.deployment_id, draining) if draining else None
        async with ctx.sessions() as session, session.begin():
            old = await repository.other_instances(session, rollout.environment_id, rollout.deployment_id,
                                                   (InstanceState.DRAINING,))
            stopped = await repository.move_instances(session, [i.id for i in old], InstanceState.STOPPED)
            if drained is not None:
                await ctx.log(session, rollout.deployment_id, drained.summary())
            if stopped:
                await ctx.log(session, rollout.deployment_id, f"Finalizing: stopped {len(stopped)} old instance(s)")
        await ctx.desired.publish_many(i.runner for i in [*stopped, *unstarted])


# The pipeline, in order: a rollout runs these and nothing else.
STEPS: tuple[Step, ...] = (ReleaseCommands(), Scaling(), SanityTests(), Finalizing())


def steps_from(announced: str | None) -> tuple[Step, ...]:
    """The steps still to run when ``announced`` was the last one started (None: all of them)."""
    names = [s.name for s in STEPS]
    return STEPS[names.index(announced):] if announced in names else STEPS
