"""The level-triggered loop: every few seconds, refresh which runners are lost and rewrite
the desired state of every runner whose heartbeats show it has not acted on its latest
one (a write it missed), and now and then every runner's, so any lost write heals itself.
Rewriting all of a thousand runners every few seconds would be most of the controller's
work at scale; rewriting the lagging ones costs nothing when all is well."""
import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .db import repository
from .runners.desired import DesiredState
from .runners.registry import RunnerRegistry

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], desired: DesiredState, registry: RunnerRegistry,
                 lost_after: timedelta, period_seconds: float, on_lost: Callable[[], None] = lambda: None,
                 full_every_seconds: float = 30.0):
        self.sessions = sessions
        self.registry = registry
        self.full_every_seconds = full_every_seconds
        self._next_full = 0.0  # loop time of the next rewrite of every runner
        self._lagging: set[str] = set()  # behind at the last pass
        self.on_lost = on_lost  # the healer: a lost runner's instances are to be replaced
        self.desired = desired
        self.lost_after = lost_after
        self.period_seconds = period_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Reconcile now rather than at the next period, rewriting every runner."""
        self._next_full = 0.0
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
            revisions = await repository.desired_revisions(session)
            # Judged by the registry, which has each heartbeat the moment it arrives (the rows
            # follow in batches, and lag under load); not before it has read the heartbeats
            # already stored, or a restarted controller would find every runner lost.
            lost = []
            if self.registry.caught_up:
                lost = await repository.mark_runner_states(
                    session, {name for name in revisions if self.registry.is_lost(name)})
        for name in lost:
            log.warning("runner %s lost: no heartbeat for %ss; its instances are replaced elsewhere", name,
                        self.lost_after.total_seconds())
        if lost:
            self.on_lost()
        now = asyncio.get_running_loop().time()
        if now >= self._next_full:
            self._next_full = now + self.full_every_seconds
            await self.desired.publish_many(revisions)
            return
        # Behind two passes in a row: not a write still on its way, but one it missed.
        behind = {name for name, revision in revisions.items() if self.registry.acted_on(name) < revision}
        missed, self._lagging = behind & self._lagging, behind
        await self.desired.publish_many(missed)
