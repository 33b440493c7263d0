"""What a rollout needs from the running controller."""
import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import DeploymentLogAppended
from regio_common.outbox import Outbox

from ..routes.applied import AppliedRoutes
from ..runners.desired import DesiredState
from ..runners.registry import RunnerRegistry
from ..settings import Settings


@dataclass
class RolloutContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    registry: RunnerRegistry
    desired: DesiredState
    applied: AppliedRoutes
    http: httpx.AsyncClient
    # Rollouts of this process queue here for the region's placement lock rather than each
    # holding a pooled connection while it waits in Postgres: those connections are what
    # every other rollout step needs meanwhile.
    placing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def lost_after(self) -> timedelta:
        return timedelta(seconds=self.settings.runner_lost_seconds)

    async def log(self, session: AsyncSession, deployment_id: UUID, *lines: str) -> None:
        """Lines for the deployment's log, sent with the transaction they describe."""
        await self.outbox.add(session, DeploymentLogAppended(deployment_id=deployment_id, lines=list(lines)))
