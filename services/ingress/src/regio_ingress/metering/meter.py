"""The traffic meter's loop: counts from memory into the database, ended periods onto the bus."""
import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import TrafficMetered
from regio_common.outbox import Outbox

from .counts import TrafficCounts, period_start
from .repository import TrafficRepository

log = logging.getLogger(__name__)

SEND_BATCH = 500  # rows a transaction sends; a backlog after an outage goes in several
PRUNE_EVERY_SECONDS = 3600.0
CLOSE_TIMEOUT_SECONDS = 5.0
# The message of one environment's period has one id whoever sends it, however often:
# JetStream drops a repeat (the control panel records the period once anyway, by its key).
MESSAGE_IDS = UUID("5d0f1f56-51a3-4c39-9a4b-6c0b8f0e7a11")


class TrafficMeter:
    """``count(environment_id, timestamp, size)`` for each request (the access log receiver);
    ``run`` for the life of the service; ``close`` once the receiver has stopped."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, ingress: str,
                 period_seconds: int, flush_seconds: float = 2.0, close_delay_seconds: float = 5.0,
                 keep: timedelta = timedelta(days=7), clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.outbox = outbox
        self.ingress = ingress
        self.period_seconds = period_seconds
        self.flush_seconds = flush_seconds
        self.close_delay_seconds = close_delay_seconds
        self.keep = keep
        self.clock = clock
        now = clock()
        self.counts = TrafficCounts(period_seconds, self._open_from(now))
        self.counts.latest = period_start(now, period_seconds) + period_seconds
        self.count = self.counts.add  # the hot path: no method of this class in between
        self._lock = asyncio.Lock()  # one round at a time: the loop's, or the last one of close
        self._pruned_at = -PRUNE_EVERY_SECONDS

    def _open_from(self, now: float) -> int:
        """The oldest period not to be sent yet: it ended less than close_delay_seconds ago, or runs."""
        return period_start(now - self.close_delay_seconds, self.period_seconds)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away: the counts stay in memory for the next round
                log.exception("traffic meter: adding or sending the counts failed; trying again in %ss",
                              self.flush_seconds)

    async def round(self) -> None:
        """Adds what was counted, then sends every period before the oldest open one. The order
        matters: from the moment ``open_from`` moves, nothing is counted into the periods before
        it, and what was counted into them before is added first, so a sent period is complete."""
        async with self._lock:
            now = self.clock()
            open_from = self._open_from(now)
            self.counts.open_from = open_from
            self.counts.latest = period_start(now, self.period_seconds) + self.period_seconds
            await self._add()
            await self._send_before(open_from)
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                await self._prune(now)

    async def close(self) -> None:
        """Adds what is counted in memory (the receiver must have stopped). What the database does
        not take within a few seconds is lost, and the log says how much."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                async with self._lock:
                    await self._add()
        except Exception as e:
            log.error("traffic meter: %d environment-periods of counted traffic are lost: %s", len(self.counts), e)

    async def _add(self) -> None:
        taken = self.counts.take()
        if not taken:
            return
        try:
            async with self.sessions() as session, session.begin():
                refused = await TrafficRepository(session).add(taken, self.period_seconds)
        except BaseException:
            self.counts.put_back(taken)
            raise
        if refused:
            # Only when the clock went back, or another process sends this schema's periods.
            log.warning("traffic meter: %d counts arrived for periods sent already; counted in the open period",
                        len(refused))
            self.counts.put_back(refused, late=True)

    async def _send_before(self, open_from: int) -> None:
        before = datetime.fromtimestamp(open_from, UTC)
        while True:
            async with self.sessions() as session, session.begin():
                repository = TrafficRepository(session)
                rows = await repository.lock_unsent_before(before, SEND_BATCH)
                for row in rows:
                    await self.outbox.add(session, TrafficMetered(
                        id=uuid5(MESSAGE_IDS, f"{self.ingress}:{row.environment_id}:{row.period_start.isoformat()}"),
                        environment_id=row.environment_id, ingress=self.ingress, period_start=row.period_start,
                        period_end=row.period_end, requests=row.requests, bytes_served=row.bytes_served))
                await repository.mark_sent(rows, datetime.fromtimestamp(self.clock(), UTC))
            if rows:
                log.info("traffic meter: sent %d environment-periods before %s", len(rows), before.isoformat())
            if len(rows) < SEND_BATCH:
                return

    async def _prune(self, now: float) -> None:
        async with self.sessions() as session, session.begin():
            deleted = await TrafficRepository(session).delete_sent_before(
                datetime.fromtimestamp(now, UTC) - self.keep)
        self._pruned_at = time.monotonic()
        if deleted:
            log.info("traffic meter: %d sent counts older than %s deleted", deleted, self.keep)
