"""The healer: keeps every environment that serves a release at its instance count, without a
deployment. It adds instances when the count grows, removes them (drained first) when it
shrinks, and replaces the instances of lost and draining runners: a replacement must pass
the same health check as a rollout's instance before the routes take it, and only then do
the instances it replaces leave the routes. An instance its runner restarted in place comes
back at a new published port: it leaves the routes, and rejoins them at its new address
once it passes that check again.

Level-triggered like the reconcile loop: each pass reads the database and does what is
missing, so a controller restarted in the middle carries on. Environments with a rollout
under way are left to it. What it does is told as the environment's events."""
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentEvent
from regio_common.runners import ObservedInstance

from ..db import repository
from ..db.models import Instance, Runner
from ..domain.errors import RolloutFailed
from ..domain.states import InstanceState, RunnerState
from ..messaging.handlers import after_commit
from ..rollout.context import RolloutContext
from ..rollout.drain import drain
from ..rollout.sanity import sanity_test
from ..routes.reroute import reroute
from ..scheduler.assign import Unplaceable, assign
from .convergence import COMING, Seen, converge

log = logging.getLogger(__name__)

# After an instance failed its health check, or nothing fitted, the environment waits this
# long before the next placement, doubling up to the last: a broken release is not
# restarted in a tight loop across the region.
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
# Health checks under way at once. A scale-up of thousands of instances would otherwise wait
# on the HTTP client's connection pool, and fail their checks there rather than at the instance.
CHECKS_AT_ONCE = 32
# Environments healed at once in a pass. One after another, a hundred environments that each
# lost an instance with a runner waited for each other's transactions, and the runners heard
# of their replacements only at the end of the pass. Bounded well under the connection pool.
ENVIRONMENTS_AT_ONCE = 8


class Healer:
    def __init__(self, ctx: RolloutContext, period_seconds: float,
                 say: Callable[[UUID, str], Awaitable[None]] | None = None):
        self.ctx = ctx
        # Each event also becomes a line of the environment's runtime logs, where its owners
        # look first; best effort, after the transaction that decided it is committed.
        self.say = say
        self.period_seconds = period_seconds
        self._wake = asyncio.Event()
        self._tasks: dict[UUID, asyncio.Task] = {}  # by instance: its health check or drain
        self._failures: dict[UUID, int] = {}  # by environment: placements that failed in a row
        self._not_before: dict[UUID, float] = {}  # by environment: the next placement
        self._told_unplaceable: dict[UUID, str] = {}  # by environment: the reason last told
        self._checking = asyncio.Semaphore(CHECKS_AT_ONCE)
        self._restarted: dict[UUID, str] = {}  # by instance: the address its runner restarted it at

    def wake(self) -> None:
        self._wake.set()

    def restarted(self, instances: Iterable[ObservedInstance]) -> None:
        """Runners report these instances running again at an address after a restart: at the
        next pass, the ones the routes have at another address leave them until checked there."""
        self._restarted.update((i.instance_id, i.address) for i in instances)
        self.wake()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.heal()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("healing pass failed; next try in %ss", self.period_seconds)
                try:
                    async with asyncio.timeout(self.period_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def heal(self) -> None:
        await self._readdress_restarted()
        async with self.ctx.sessions() as session:
            runners = await repository.all_runners(session)
            environments = await repository.workloads_to_heal(session)
        healing = asyncio.Semaphore(ENVIRONMENTS_AT_ONCE)

        async def heal_one(environment_id: UUID) -> None:
            async with healing:
                try:
                    touched = await self._heal(environment_id, runners)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("healing environment %s failed; retrying at the next pass", environment_id)
                    return
            # Its runners are told now, not at the end of the pass. The writer coalesces what
            # environments ask for meanwhile: a thousand environments are still a few batched writes.
            await self.ctx.desired.publish_many(touched)

        await asyncio.gather(*(heal_one(environment_id) for environment_id in environments))

    async def _heal(self, environment_id: UUID, runners: dict[str, Runner]) -> set[str]:
        """Acts on one environment; returns the runners whose desired state changed."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        touched: set[str] = set()
        drains: list[Instance] = []
        async with ctx.sessions() as session, session.begin():
            await repository.lock_environment(session, environment_id)
            workload = await repository.lock_workload(session, environment_id)
            if (workload is None or workload.current_deployment_id is None or workload.instances is None
                    or await repository.has_unfinished_rollout(session, environment_id)):
                return touched
            active = await repository.environment_instances(session, environment_id)
            current = [i for i in active if i.deployment_id == workload.current_deployment_id]
            # Left over from an older release (a race with a rollout that has ended): never to serve again.
            orphans = [i for i in active if i.deployment_id != workload.current_deployment_id
                       and i.id not in self._tasks]
            touched |= {i.runner for i in await repository.move_instances(
                session, [i.id for i in orphans], InstanceState.STOPPED)}

            leaving_runners = {n for n, r in runners.items() if r.state == RunnerState.LOST or r.draining}
            seen = [Seen(i.id, i.runner, InstanceState(i.state), i.runner in leaving_runners)
                    for i in current if i.state != InstanceState.DRAINING]
            plan = converge(workload.instances, seen)
            lost = {n for n, r in runners.items() if r.state == RunnerState.LOST}
            by_id = {i.id: i for i in current}

            stopped = await self._end(session, [by_id[i] for i in plan.stop], lost)
            touched |= {i.runner for i in stopped}
            if plan.drain:
                draining = await repository.move_instances(session, plan.drain, InstanceState.DRAINING)
                revision = await reroute(session, ctx.outbox, workload)
                drains = draining
                await self._tell(session, environment_id, "scaled" if not any(
                    i.runner in leaving_runners for i in draining) else "moved",
                    f"{len(draining)} instance(s) leave the routes (route revision {revision}): "
                    + _why_leaving(draining, workload.instances, runners))
            placed: list[Instance] = []
            if plan.add and loop.time() >= self._not_before.get(environment_id, 0.0):
                release = await repository.get_release(session, workload.current_release_id)
                try:
                    placed = await assign(session, region=ctx.settings.region,
                                          environment_id=environment_id,
                                          deployment_id=workload.current_deployment_id, release=release,
                                          count=plan.add, dedicated_to=workload.dedicated_to)
                except Unplaceable as e:
                    self._backoff(environment_id)
                    if self._told_unplaceable.get(environment_id) != e.reason:
                        self._told_unplaceable[environment_id] = e.reason
                        await self._tell(session, environment_id, "unplaceable",
                                         f"{plan.add} instance(s) wanted but not placed: {e.reason}")
                else:
                    self._told_unplaceable.pop(environment_id, None)
                    touched |= {i.runner for i in placed}
                    healthy = sum(1 for s in seen if s.state == InstanceState.HEALTHY and not s.leaving)
                    await self._tell(session, environment_id, "replaced" if any(s.leaving for s in seen) else "scaled",
                                     f"{len(placed)} instance(s) of {release.memory_mb} MB placed on runner(s) "
                                     f"{', '.join(sorted({i.runner for i in placed}))}: {healthy} of "
                                     f"{workload.instances} healthy elsewhere")
            # Draining after a restart interrupted its drain; coming ones not yet checked.
            drains += [i for i in current if i.state == InstanceState.DRAINING and i.id not in self._tasks]
            # From what was read above and placed now: not a second read of the same rows.
            checks = [i for i in [*current, *placed] if i.state in COMING and i.id not in self._tasks
                      and i.id not in plan.stop and i.runner not in leaving_runners]
            revision = workload.route_revision
        for instance in checks:
            self._spawn(instance.id, self._check(instance))
        if drains:
            self._spawn_drain(environment_id, drains, revision, lost)
        return touched

    # --- instances restarted at a new address -------------------------------------------

    async def _readdress_restarted(self) -> None:
        """The routes must not keep a restarted instance's old port: nothing answers there, and
        the runner may publish another instance on it later."""
        reported, self._restarted = self._restarted, {}
        if not reported:
            return
        try:
            async with self.ctx.sessions() as session:
                moved = await repository.serving_at_other_addresses(session, reported)
        except Exception:
            self._restarted = reported | self._restarted  # kept for the next pass; newer reports win
            raise
        for instance in moved:
            address = reported[instance.id]
            try:
                done = await self._readdress(instance, address)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("instance %s: not readdressed; retrying at the next pass", instance.id)
                done = False
            if not done:
                self._restarted.setdefault(instance.id, address)

    async def _readdress(self, instance: Instance, address: str) -> bool:
        """Takes the instance out of the routes and leaves its check to the pass that follows;
        False while a rollout of its environment is under way (the rollout decides the routes)."""
        async with self.ctx.sessions() as session, session.begin():
            await repository.lock_environment(session, instance.environment_id)
            workload = await repository.lock_workload(session, instance.environment_id)
            if workload is None or await repository.has_unfinished_rollout(session, instance.environment_id):
                return False
            if await repository.readdress(session, instance.id, address):
                revision = await reroute(session, self.ctx.outbox, workload)
                await self._tell(session, instance.environment_id, "moved",
                                 f"instance {instance.id} restarted at {address}: it leaves the routes "
                                 f"(route revision {revision}) until it passes its health check there",
                                 instance.id)
        return True

    # --- health checks of new instances ------------------------------------------------

    async def _check(self, instance: Instance) -> None:
        """The rollout's sanity test for one new instance; then it joins the routes."""
        ctx = self.ctx
        async with ctx.sessions() as session:
            release = await repository.get_release(session, instance.release_id)
        try:
            async with self._checking:  # the time limit starts once it is this check's turn
                passed = await sanity_test(ctx, instance, release, ctx.settings.sanity_timeout_seconds)
        except RolloutFailed as e:
            async with ctx.sessions() as session, session.begin():
                await repository.lock_environment(session, instance.environment_id)
                failed = await repository.move_instances(session, [instance.id], InstanceState.FAILED)
                if failed:
                    self._backoff(instance.environment_id)
                    await self._tell(session, instance.environment_id, "unhealthy",
                                     f"new instance {instance.id} failed: {e.reason}; another is placed",
                                     instance.id)
            await ctx.desired.publish_many([instance.runner])
            self.wake()
            return
        async with ctx.sessions() as session, session.begin():
            await repository.lock_environment(session, instance.environment_id)
            workload = await repository.lock_workload(session, instance.environment_id)
            serves = (workload is not None and workload.current_deployment_id == instance.deployment_id
                      and not await repository.has_unfinished_rollout(session, instance.environment_id))
            if not serves:  # a rollout took over meanwhile: it decides what serves
                stopped = await repository.move_instances(session, [instance.id], InstanceState.STOPPED)
            else:
                stopped = []
                moved = await repository.move_instances(session, [instance.id], InstanceState.HEALTHY,
                                                        address=passed.address)
                if moved:
                    self._failures.pop(instance.environment_id, None)
                    self._not_before.pop(instance.environment_id, None)
                    revision = await reroute(session, ctx.outbox, workload)
                    await self._tell(session, instance.environment_id, "healthy",
                                     f"instance {instance.id} on runner {instance.runner} answered HTTP "
                                     f"{passed.status} and joins the routes (route revision {revision})",
                                     instance.id)
        if stopped:
            await ctx.desired.publish_many([instance.runner])
        # What it replaces leaves at the next pass (within a period): waking a pass for every
        # healthy instance would make a thousand-instance scale-up a thousand passes.

    # --- draining ------------------------------------------------------------------------

    def _spawn_drain(self, environment_id: UUID, instances: list[Instance], revision: int, lost: set[str]) -> None:
        task = asyncio.create_task(self._drain(environment_id, instances, revision, lost),
                                   name=f"heal-drain {environment_id}")
        for instance in instances:
            self._tasks[instance.id] = task

        def done(t: asyncio.Task) -> None:
            for instance in instances:
                if self._tasks.get(instance.id) is t:
                    del self._tasks[instance.id]
            if not t.cancelled() and t.exception() is not None:
                log.error("draining instances of %s failed: %s", environment_id, t.exception())

        task.add_done_callback(done)

    async def _drain(self, environment_id: UUID, instances: list[Instance], revision: int, lost: set[str]) -> None:
        """Once the ingress carries the route without them, wait for their requests in flight
        (bounded by the drain grace), then stop them."""
        ctx = self.ctx
        timeout = ctx.settings.routes_applied_timeout_seconds
        if not await ctx.applied.wait(environment_id, revision, timeout):
            log.warning("environment %s: the ingress did not apply route revision %d within %gs; "
                        "draining all the same", environment_id, revision, timeout)
        drained = await drain(ctx, None, instances)
        async with ctx.sessions() as session, session.begin():
            await repository.lock_environment(session, environment_id)
            ended = await self._end(session, instances, lost)
            if ended:
                await self._tell(session, environment_id, "stopped",
                                 f"{len(ended)} instance(s) stopped: {drained.summary().removeprefix('Finalizing: ')}")
        await ctx.desired.publish_many(i.runner for i in ended)

    # --- helpers -------------------------------------------------------------------------

    async def _end(self, session: AsyncSession, instances: list[Instance], lost: set[str]) -> list[Instance]:
        """Stops instances for good: lost if their runner is, else stopped."""
        on_lost = [i.id for i in instances if i.runner in lost]
        others = [i.id for i in instances if i.runner not in lost]
        return [*await repository.move_instances(session, on_lost, InstanceState.LOST),
                *await repository.move_instances(session, others, InstanceState.STOPPED)]

    def _spawn(self, instance_id: UUID, work) -> None:
        task = asyncio.create_task(work, name=f"heal {instance_id}")
        self._tasks[instance_id] = task

        def done(t: asyncio.Task) -> None:
            if self._tasks.get(instance_id) is t:
                del self._tasks[instance_id]
            if not t.cancelled() and t.exception() is not None:
                log.error("healing instance %s failed: %s", instance_id, t.exception())

        task.add_done_callback(done)

    def _backoff(self, environment_id: UUID) -> None:
        failures = self._failures.get(environment_id, 0)
        self._failures[environment_id] = failures + 1
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        self._not_before[environment_id] = asyncio.get_running_loop().time() + delay

    async def _tell(self, session: AsyncSession, environment_id: UUID, reason: str, message: str,
                    instance_id: UUID | None = None) -> None:
        log.info("environment %s: %s", environment_id, message)
        await self.ctx.outbox.add(session, EnvironmentEvent(environment_id=environment_id, instance_id=instance_id,
                                                            reason=reason, message=message))
        if self.say is not None:
            after_commit(session, lambda: self._say(environment_id, message))

    def _say(self, environment_id: UUID, message: str) -> None:
        task = asyncio.create_task(self.say(environment_id, message))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.warning("runtime log line not published: %s", t.exception()))


def _why_leaving(instances: list[Instance], wanted: int, runners: dict[str, Runner]) -> str:
    reasons = []
    for name in sorted({i.runner for i in instances}):
        runner = runners.get(name)
        if runner is not None and runner.state == RunnerState.LOST:
            reasons.append(f"runner {name} is lost")
        elif runner is not None and runner.draining:
            reasons.append(f"runner {name} is draining")
    return "; ".join(reasons) + (" and replaced" if reasons else f"scaling down to {wanted} instance(s)")

