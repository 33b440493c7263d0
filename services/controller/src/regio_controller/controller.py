"""The running controller: its runtime and the parts wired together."""
from datetime import timedelta
from uuid import UUID

import httpx

from regio_common import runtime_logs
from regio_common.bus import COMMANDS, EVENTS, ensure_buckets
from regio_common.messages import (
    DeploymentCancelled,
    EnvironmentRetired,
    RolloutRequested,
    RoutesApplied,
    subject_for,
    utcnow,
)
from regio_common.runtime import Runtime
from regio_common.runtime_logs import PLATFORM, LogLine
from regio_common.subscriber import by_environment

from .db import repository
from .db.models import inbox, outbox
from .environments.traffic_watch import TrafficWatch
from .healing.healer import Healer
from .messaging.consumers import (
    cancellations_consumer,
    environments_consumer,
    rollouts_consumer,
    routes_applied_consumer,
)
from .messaging.handlers import (
    on_deployment_cancelled,
    on_environment_command,
    on_rollout_requested,
    on_routes_applied,
)
from .reconcile import Reconciler
from .rollout.context import RolloutContext
from .rollout.worker import RolloutWorker
from .routes.applied import AppliedRoutes
from .routes.ingresses import Ingresses
from .runners.capacity import capacity
from .runners.desired import DesiredState
from .runners.heartbeats import HeartbeatWatcher
from .runners.registry import RunnerRegistry
from .settings import Settings


class Controller:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.runtime = Runtime("controller", settings, outbox, inbox)
        self.registry = RunnerRegistry(timedelta(seconds=settings.runner_lost_seconds))
        self.http: httpx.AsyncClient | None = None
        self.worker: RolloutWorker | None = None
        self.healer: Healer | None = None
        self.desired: DesiredState | None = None

    async def start(self) -> None:
        settings, runtime = self.settings, self.runtime
        await runtime.start()
        await ensure_buckets(runtime.js, settings.region)
        # Sanity tests go straight to runner addresses, never through a proxy from the environment.
        self.http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        desired = self.desired = DesiredState(runtime.js, runtime.sessions, settings.region)
        applied = AppliedRoutes(runtime.sessions)
        ctx = RolloutContext(settings=settings, sessions=runtime.sessions, outbox=runtime.outbox,
                             registry=self.registry, desired=desired, applied=applied, http=self.http)
        self.worker = RolloutWorker(ctx, settings.rollout_poll_seconds, parallel=settings.parallel_rollouts)
        self.healer = Healer(ctx, settings.reconcile_seconds, say=self._say)
        reconciler = Reconciler(runtime.sessions, desired, self.registry, self.registry.lost_after,
                                settings.reconcile_seconds, on_lost=self.healer.wake)
        traffic = TrafficWatch(runtime.sessions, runtime.outbox,
                               Ingresses(self.http, settings.ingress_urls, settings.service_token),
                               drain_seconds=settings.traffic_hold_drain_seconds,
                               least_drain_seconds=settings.drain_seconds, period=settings.traffic_check_seconds,
                               instances_stopped=reconciler.wake)

        # A burst of deploys is recorded side by side; each environment's requests stay in order.
        runtime.subscribe(COMMANDS.name, rollouts_consumer(settings.region),
                          subject_for(RolloutRequested, settings.region),
                          on_rollout_requested(runtime.outbox, settings.sanity_timeout_seconds, self.worker.wake),
                          lane=by_environment)
        # EnvironmentHostsChanged shares the subject. One at a time, in order across environments:
        # a domain moved from one environment to another must leave the first before it joins the second.
        runtime.subscribe(COMMANDS.name, environments_consumer(settings.region),
                          subject_for(EnvironmentRetired, settings.region),
                          on_environment_command(runtime.outbox, self.worker.stop, reconciler.wake,
                                                 self.healer.wake, traffic.wake))
        runtime.subscribe(EVENTS.name, cancellations_consumer(settings.region),
                          subject_for(DeploymentCancelled, settings.region),
                          on_deployment_cancelled(ctx, self.worker.stop, reconciler.wake))
        runtime.subscribe(EVENTS.name, routes_applied_consumer(settings.region),
                          subject_for(RoutesApplied, settings.region), on_routes_applied(applied), lane=by_environment)
        runtime.spawn("heartbeats",
                      HeartbeatWatcher(runtime.js, runtime.sessions, self.registry, settings.region,
                                       runtime.outbox, on_back=self.healer.restarted).run)
        runtime.spawn("rollouts", self.worker.run)
        runtime.spawn("reconcile", reconciler.run)
        runtime.spawn("healer", self.healer.run)
        runtime.spawn("traffic", traffic.run)
        runtime.report_status(self.capacity)  # the region's heartbeat: the control panel's view of it

    async def capacity(self) -> dict[str, int]:
        """What the region's runners offer (runners.capacity), for the heartbeat."""
        async with self.runtime.sessions() as session:
            unschedulable = await repository.unschedulable_runners(session)
        return capacity(self.registry, self.desired.held_mb if self.desired else {}, unschedulable)

    async def _say(self, environment_id: UUID, message: str) -> None:
        """A platform line in the environment's runtime logs."""
        line = LogLine(timestamp=utcnow(), service=PLATFORM, message=message)
        await self.runtime.nc.publish(runtime_logs.subject(self.settings.region, environment_id),
                                      line.model_dump_json().encode())

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.http is not None:
            await self.http.aclose()

