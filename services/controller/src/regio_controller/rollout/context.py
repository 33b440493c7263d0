"""What a rollout needs from the running controller."""
from dataclasses import dataclass
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

    @property
    def lost_after(self) -> timedelta:
        return timedelta(seconds=self.settings.runner_lost_seconds)

    async def log(self, session: AsyncSession, deployment_id: UUID, *lines: str) -> None:
        """Lines for the deployment's log, sent with the transaction they describe."""
        await self.outbox.add(session, DeploymentLogAppended(deployment_id=deployment_id, lines=list(lines)))
