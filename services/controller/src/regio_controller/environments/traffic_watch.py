"""Telling the control panel when an environment's traffic change is in effect, and forgetting a
forwarded environment when its forward ends. Level-triggered from the workloads' rows, so a
restarted controller picks up where it was.

In effect means: the ingress carries the route of the change (RoutesApplied, which the ingress
sends only once Caddy can no longer use an older answer); for HOLD and FORWARD also that no
request is in flight to the environment's instances any more, waited for at most
traffic_hold_drain_seconds from the command (then reported with ``error`` set, the hold kept:
the control panel decides). For FORWARD the instances then stop, as a retirement stops them."""
import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import EnvironmentTrafficChanged, Traffic, utcnow
from regio_common.outbox import Outbox

from ..db import repository
from ..db.models import Workload
from ..domain.states import InstanceState
from ..routes.ingresses import InFlight, Ingresses
from ..routes.table import route_emptied

log = logging.getLogger(__name__)

ASK_TIMEOUT_SECONDS = 1.0


class TrafficWatch:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, ingresses: Ingresses, *,
                 drain_seconds: float, least_drain_seconds: float, period: float,
                 instances_stopped: Callable[[], None]):
        self.sessions = sessions
        self.outbox = outbox
        self.ingresses = ingresses
        self.drain_seconds = drain_seconds
        # As a rollout's drain: a request Caddy picked an instance for just before the switch counts
        # against it only once it is proxied there; an empty count is believed only after this.
        self.least_drain_seconds = least_drain_seconds
        self.period = period
        self.instances_stopped = instances_stopped
        self._wanted = asyncio.Event()
        # change id → when its route was first seen applied (the loop's clock, and the wall clock)
        self._applied_seen: dict[UUID, tuple[float, datetime]] = {}

    def wake(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            self._wanted.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking the environments' traffic changes failed; trying again")
            try:
                await asyncio.wait_for(self._wanted.wait(), self.period)
            except TimeoutError:
                pass

    async def check(self) -> None:
        async with self.sessions() as session:
            due = await repository.traffic_due(session)
        pending = {w.traffic_change_id for w in due if not w.traffic_reported}
        for change_id in self._applied_seen.keys() - pending:  # superseded by a later change
            del self._applied_seen[change_id]
        await asyncio.gather(*(self._report(w) for w in due if not w.traffic_reported))
        now = utcnow()
        for workload in due:
            if workload.traffic_reported and workload.traffic == Traffic.FORWARD and workload.forward_until <= now:
                await self._forget(workload.environment_id)

    async def _report(self, seen: Workload) -> None:
        if seen.applied_route_revision < (seen.traffic_revision or 0):
            return  # the ingress does not carry the change's route yet
        loop = asyncio.get_running_loop()
        applied_at, applied_when = self._applied_seen.setdefault(seen.traffic_change_id, (loop.time(), utcnow()))
        error = None
        if seen.traffic in (Traffic.HOLD, Traffic.FORWARD):
            if loop.time() - applied_at < self.least_drain_seconds:
                return
            async with self.sessions() as session:
                instances = await repository.environment_instances(session, seen.environment_id)
            addresses = {i.address for i in instances if i.address}
            if addresses:
                found = await self.ingresses.in_flight(addresses, ASK_TIMEOUT_SECONDS)
                waited = (utcnow() - seen.traffic_changed_at).total_seconds()
                if not found.idle:
                    if waited < self.drain_seconds:
                        return  # asked again at the next check
                    error = _still_in_flight(found, self.drain_seconds)
        async with self.sessions() as session, session.begin():
            await repository.lock_environment(session, seen.environment_id)
            workload = await repository.lock_workload(session, seen.environment_id)
            if workload is None or workload.traffic_change_id != seen.traffic_change_id or workload.traffic_reported:
                return  # changed again meanwhile, or reported by another controller process
            stopped = []
            if workload.traffic == Traffic.FORWARD:
                if error:
                    log.warning("environment %s forwarded: %s; they are cut off", seen.environment_id, error)
                    error = None  # the forward is in effect all the same
                active = await repository.environment_instances(session, seen.environment_id)
                stopped = await repository.move_instances(session, [i.id for i in active], InstanceState.STOPPED)
            workload.traffic_reported = True
            await self.outbox.add(session, EnvironmentTrafficChanged(
                environment_id=seen.environment_id, change_id=seen.traffic_change_id, mode=workload.traffic,
                error=error, applied_at=applied_when))
        self._applied_seen.pop(seen.traffic_change_id, None)
        log.info("environment %s: traffic %s in effect%s%s", seen.environment_id, seen.traffic,
                 f", {len(stopped)} instance(s) stopped" if stopped else "", f" ({error})" if error else "")
        if stopped:
            self.instances_stopped()  # the runners' desired states are rewritten without them

    async def _forget(self, environment_id: UUID) -> None:
        """The forward is over: the ingress stops answering the hosts, the workload goes."""
        async with self.sessions() as session, session.begin():
            await repository.lock_environment(session, environment_id)
            workload = await repository.lock_workload(session, environment_id)
            if workload is None or workload.traffic != Traffic.FORWARD or workload.forward_until > utcnow():
                return
            await self.outbox.add(session, route_emptied(environment_id, workload.route_revision + 1))
            # No tombstone: the environment may come back to this region by a later migration,
            # its routes going on from this revision.
            await repository.forget_environment(session, environment_id, workload.route_revision + 1)
        log.info("environment %s: forward to another region ended; forgotten here", environment_id)
        self.instances_stopped()


def _still_in_flight(found: InFlight, seconds: float) -> str:
    if found.unanswered:
        return (f"{len(found.unanswered)} ingress(es) could not say what is in flight to the instances "
                f"within {seconds:g}s")
    return f"{found.requests} request(s) still in flight to the instances after {seconds:g}s"
