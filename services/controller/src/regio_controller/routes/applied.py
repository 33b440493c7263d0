"""Which route revision the ingress has applied per environment, and waiting for one.

The RoutesApplied handler records the revision in the workload's row and here; a
rollout waits here, and also reads the row now and then, because the event may
have been handled by another controller process."""
import asyncio
from collections import defaultdict
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import utcnow

from ..db import repository


class AppliedRoutes:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions
        self._applied: defaultdict[UUID, int] = defaultdict(int)
        self._changed = asyncio.Condition()

    async def record(self, environment_id: UUID, revision: int) -> None:
        async with self._changed:
            if revision > self._applied[environment_id]:
                self._applied[environment_id] = revision
            self._changed.notify_all()

    async def wait(self, environment_id: UUID, revision: int, timeout: float, recheck_seconds: float = 5.0) -> bool:
        """True once the ingress carries ``revision`` (or newer) of the environment's route. The
        row is read again every ``recheck_seconds`` only in case another controller process
        handled the event: with hundreds of rollouts waiting, a tighter recheck is most of
        the database's work."""
        deadline = utcnow().timestamp() + timeout
        while True:
            if self._applied[environment_id] >= revision:
                return True
            async with self.sessions() as session:
                stored = await repository.applied_revision(session, environment_id)
            if stored >= revision:
                await self.record(environment_id, stored)
                return True
            remaining = deadline - utcnow().timestamp()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(min(remaining, recheck_seconds)), self._changed:
                    await self._changed.wait_for(lambda: self._applied[environment_id] >= revision)
            except TimeoutError:
                pass
