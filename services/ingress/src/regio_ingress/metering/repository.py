"""Every query on the traffic counts."""
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Row, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import traffic_counts
from .counts import Key

ROWS_PER_STATEMENT = 1000  # 6 parameters a row, under Postgres' 32767 a statement


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class TrafficRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, counts: dict[Key, list[int]], period_seconds: int) -> dict[Key, list[int]]:
        """Adds ``counts`` to their periods' rows (made when missing); returns those whose row
        was sent already, which nothing may change any more."""
        keys = sorted(counts, key=lambda key: (key[1], key[0]))  # one order: concurrent adds never deadlock
        added: set[Key] = set()
        for first in range(0, len(keys), ROWS_PER_STATEMENT):
            rows = [{"environment_id": environment_id, "period_start": _time(start),
                     "period_end": _time(start + period_seconds), "requests": counts[(environment_id, start)][0],
                     "bytes_served": counts[(environment_id, start)][1]}
                    for environment_id, start in keys[first:first + ROWS_PER_STATEMENT]]
            stmt = pg_insert(traffic_counts).values(rows)
            stmt = stmt.on_conflict_do_update(
                index_elements=[traffic_counts.c.environment_id, traffic_counts.c.period_start],
                set_={"requests": traffic_counts.c.requests + stmt.excluded.requests,
                      "bytes_served": traffic_counts.c.bytes_served + stmt.excluded.bytes_served},
                where=traffic_counts.c.sent_at.is_(None),
            ).returning(traffic_counts.c.environment_id, traffic_counts.c.period_start)
            for row in await self.session.execute(stmt):
                added.add((row.environment_id, int(row.period_start.timestamp())))
        return {key: counts[key] for key in keys if key not in added}

    async def lock_unsent_before(self, before: datetime, limit: int) -> Sequence[Row]:
        """Rows of periods that began before ``before``, not sent yet, oldest first."""
        return (await self.session.execute(
            select(traffic_counts)
            .where(traffic_counts.c.sent_at.is_(None), traffic_counts.c.period_start < before)
            .order_by(traffic_counts.c.period_start, traffic_counts.c.environment_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all()

    async def mark_sent(self, rows: Sequence[Row], at: datetime) -> None:
        if rows:
            await self.session.execute(
                update(traffic_counts)
                .where(tuple_(traffic_counts.c.environment_id, traffic_counts.c.period_start)
                       .in_([(row.environment_id, row.period_start) for row in rows]))
                .values(sent_at=at))

    async def delete_sent_before(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(traffic_counts).where(traffic_counts.c.sent_at.is_not(None), traffic_counts.c.period_end < before))
        return result.rowcount
