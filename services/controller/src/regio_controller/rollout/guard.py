"""Every transaction that moves a rollout on starts by locking its row and checking that it
still runs: retiring the environment or cancelling the deployment ends a rollout from
outside, possibly from another controller process, and a step must not go on placing,
routing or draining after that."""
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from ..db import repository
from ..db.models import Rollout
from ..domain.errors import RolloutEnded
from ..domain.states import UNFINISHED_ROLLOUT_STATES


async def lock_unfinished(session: AsyncSession, deployment_id: UUID) -> Rollout:
    """The rollout's row, locked until the transaction ends; RolloutEnded if it no longer runs."""
    rollout = await repository.get_rollout(session, deployment_id, lock=True)
    if rollout is None or rollout.state not in UNFINISHED_ROLLOUT_STATES:
        raise RolloutEnded(deployment_id)
    return rollout
