"""The instance meter: how long each instance's container ran, from Docker's own times
(State.StartedAt to State.FinishedAt), sent as InstanceUsageMetered pieces through the outbox.

A run is cut at every metering period's end (periods of ``meter_period_seconds`` aligned to
the epoch) and at its own end. A piece is sent once its end is known: its period's end has
passed while the container still ran, or the run ended. Each piece's message is written in
the transaction that moves the run's ``metered_until`` past it, under a lock of the run's
row: a restarted agent (or the action and the pass that both see an exit) goes on from there,
so no piece is sent twice or skipped.

A run's end is written before its container is started again or removed (the actions call
``end_run`` first, and do nothing further if it fails): Docker forgets FinishedAt at the
next start, and everything at removal."""
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import InstanceUsageMetered
from regio_common.outbox import Outbox
from regio_common.runners import ContainerState

from .db import repository
from .db.models import InstanceRun
from .db.repository import RunKey
from .docker_engine import Container

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_end(moment: datetime, period: timedelta) -> datetime:
    """The end of the metering period ``moment`` lies in (a moment on a boundary begins one)."""
    return EPOCH + ((moment - EPOCH) // period + 1) * period


def pieces(metered_until: datetime, ended_at: datetime | None, seen_running_at: datetime | None,
           period: timedelta) -> list[tuple[datetime, datetime]]:
    """The pieces of a run to send now, from where it was metered until: cut at each period's
    end, up to the run's end when it is known, else up to the last period end the container
    was seen running past."""
    sent: list[tuple[datetime, datetime]] = []
    start = metered_until
    while True:
        boundary = period_end(start, period)
        if ended_at is not None and ended_at <= boundary:
            if ended_at > start:
                sent.append((start, ended_at))
            return sent
        if ended_at is None and (seen_running_at is None or boundary > seen_running_at):
            return sent
        sent.append((start, boundary))
        start = boundary


@dataclass(frozen=True)
class Run:
    """What the meter keeps in memory of a row, to touch the database only when there is work."""

    ended_at: datetime | None
    metered_until: datetime

    @property
    def done(self) -> bool:
        return self.ended_at is not None and self.metered_until >= self.ended_at


@dataclass(frozen=True)
class Sighting:
    """What one look at the engine says of a run: it is there (``row``, to write it if it is
    new), it ran at least until ``running_at``, or it ended at ``ended_at``."""

    key: RunKey
    row: dict | None = None
    running_at: datetime | None = None
    ended_at: datetime | None = None


def run_key(container: Container) -> RunKey | None:
    if container.started_at is None or container.instance_id is None or container.environment_id is None:
        return None  # never started, described from the engine's list only, or not an instance
    return container.container_id, container.started_at


def run_end(container: Container) -> datetime | None:
    """Docker's FinishedAt of an exited container's run (never before its start)."""
    if container.state != ContainerState.EXITED or container.started_at is None:
        return None
    return max(container.finished_at or container.started_at, container.started_at)


class Meter:
    def __init__(self, runner: str, period_seconds: int, sessions: async_sessionmaker[AsyncSession],
                 outbox: Outbox):
        self.runner = runner
        self.period = timedelta(seconds=period_seconds)
        self.sessions = sessions
        self.outbox = outbox
        self._runs: dict[RunKey, Run] = {}  # this runner's rows, as last written

    async def load(self) -> None:
        """What the last agent of this runner recorded: metering goes on from there."""
        async with self.sessions() as session:
            rows = await repository.load_runs(session, self.runner)
        self._runs = {(r.container_id, r.started_at): Run(r.ended_at, r.metered_until) for r in rows}

    async def observe(self, containers: Iterable[Container], seen_at: datetime) -> None:
        """After a pass's look at the engine (begun at ``seen_at``): new runs, ended runs and
        passed period ends are metered; runs of containers that are gone are forgotten."""
        containers = [c for c in containers if c.instance_id is not None]
        listed = {c.container_id: c for c in containers}
        sightings: list[Sighting] = []
        for container in containers:
            key = run_key(container)
            if key is None:
                continue
            ended_at = run_end(container)
            known = self._runs.get(key)
            if known is None:
                sightings.append(Sighting(key, self._row(container), ended_at=ended_at,
                                          running_at=None if ended_at else seen_at))
            elif not known.done and (ended_at is not None
                                     or period_end(known.metered_until, self.period) <= seen_at):
                sightings.append(Sighting(key, ended_at=ended_at, running_at=None if ended_at else seen_at))
        forget: list[RunKey] = []
        for key, known in self._runs.items():
            container = listed.get(key[0])
            if container is not None and (container.started_at is None or container.started_at == key[1]):
                continue  # this run's container, or one being started (its times unknown until then)
            if known.done:
                forget.append(key)  # removed, or started again: its last run can no longer be mistaken for new
                continue
            # It ended without the agent seeing it end (stopped or removed by hand, or started
            # again by someone else): Docker's FinishedAt if it still says, else where it was metered until.
            ended_at = known.metered_until
            if container is not None and container.finished_at is not None and key[1] <= container.finished_at:
                ended_at = max(min(container.finished_at, container.started_at), known.metered_until)
            log.warning("the run of container %s since %s ended unseen; metered until %s", key[0][:12],
                        key[1].isoformat(), ended_at.isoformat())
            sightings.append(Sighting(key, ended_at=ended_at))
        if sightings or forget:
            await self._meter(sightings, forget)

    async def end_run(self, container: Container) -> None:
        """An exited container's run ends: written, with its last pieces, before the container
        is started again or removed. Raises if it could not be written (then neither may happen)."""
        key = run_key(container)
        ended_at = run_end(container)
        if key is None or ended_at is None:
            return
        known = self._runs.get(key)
        if known is not None and known.done:
            return
        await self._meter([Sighting(key, self._row(container), ended_at=ended_at)], [])

    def _row(self, container: Container) -> dict:
        return {"container_id": container.container_id, "started_at": container.started_at,
                "runner": self.runner, "instance_id": container.instance_id,
                "environment_id": container.environment_id, "memory_mb": container.memory_mb or 0,
                "ended_at": None, "metered_until": container.started_at}

    async def _meter(self, sightings: list[Sighting], forget: list[RunKey]) -> None:
        """One transaction: the runs' rows locked, their pieces into the outbox, their rows moved on."""
        by_key = {s.key: s for s in sightings}
        async with self.sessions() as session, session.begin():
            await repository.add_runs(session, [s.row for s in sightings if s.row is not None])
            rows = await repository.lock_runs(session, by_key)
            for row in rows:
                await self._meter_run(session, row, by_key[(row.container_id, row.started_at)])
            await repository.forget_runs(session, forget)
        for row in rows:
            self._runs[(row.container_id, row.started_at)] = Run(row.ended_at, row.metered_until)
        for key in forget:
            self._runs.pop(key, None)

    async def _meter_run(self, session: AsyncSession, row: InstanceRun, sighting: Sighting) -> None:
        if row.ended_at is None and sighting.ended_at is not None:
            row.ended_at = max(sighting.ended_at, row.metered_until)
        for start, end in pieces(row.metered_until, row.ended_at, sighting.running_at, self.period):
            await self.outbox.add(session, InstanceUsageMetered(
                instance_id=row.instance_id, environment_id=row.environment_id, runner=row.runner,
                memory_mb=row.memory_mb, segment_start=start, segment_end=end))
            row.metered_until = end
