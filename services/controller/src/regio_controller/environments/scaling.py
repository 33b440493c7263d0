"""An environment's instance count changed without a deployment: the healer adds or removes
instances of what it serves now; rollouts not yet placed take the new count."""
import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentEvent
from regio_common.outbox import Outbox

from ..db import repository

log = logging.getLogger(__name__)

NOT_YET_PLACED = (None, "release commands")  # a rollout's steps before scaling


async def scale(session: AsyncSession, outbox: Outbox, environment_id: UUID, instances: int) -> bool:
    """Records the new count; True when the healer has something to do."""
    await repository.lock_environment(session, environment_id)
    for rollout in await repository.lock_unfinished_rollouts(session, environment_id):
        if rollout.step in NOT_YET_PLACED:
            rollout.instances = instances
    workload = await repository.lock_workload(session, environment_id)
    if workload is None:
        log.info("environment %s scaled to %d before any rollout; its first rollout carries the count",
                 environment_id, instances)
        return False
    if workload.instances == instances:
        return False
    before, workload.instances = workload.instances, instances
    await outbox.add(session, EnvironmentEvent(
        environment_id=environment_id, reason="scaled",
        message=f"scaling from {before} to {instances} instance(s)"))
    return True
