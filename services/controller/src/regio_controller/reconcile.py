"""The level-triggered loop: every few seconds, refresh which runners are lost and
rewrite every runner's full desired state, so a missed or lost write heals itself."""
import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import utcnow

from .db import repository
from .runners.desired import DesiredState

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], desired: DesiredState, lost_after: timedelta,
                 period_seconds: float, on_lost: Callable[[], None] = lambda: None):
        self.sessions = sessions
        self.on_lost = on_lost  # the healer: a lost runner's instances are to be replaced
        self.desired = desired
        self.lost_after = lost_after
        self.period_seconds = period_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Reconcile now rather than at the next period."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile failed; next try in %ss", self.period_seconds)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                async with asyncio.timeout(self.period_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def reconcile(self) -> None:
        async with self.sessions() as session, session.begin():
            lost = await repository.mark_runner_states(session, utcnow() - self.lost_after)
            runners = await repository.runner_names(session)
        for name in lost:
            log.warning("runner %s lost: no heartbeat for %ss; its instances are replaced elsewhere", name,
                        self.lost_after.total_seconds())
        if lost:
            self.on_lost()
        await self.desired.publish_many(runners)
