"""Retiring an environment the control panel deleted: its unfinished rollouts fail, its
instances leave the runners' desired state, its hosts leave the ingress, and the
controller forgets it but for a tombstone that refuses commands arriving late."""
import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import DeploymentLogAppended, RolloutFinished
from regio_common.outbox import Outbox

from ..db import repository
from ..routes.table import route_emptied

log = logging.getLogger(__name__)

RETIRED = "the environment was deleted"
MOVED_AWAY = "the environment's migration to this region was rolled back"


async def retire(session: AsyncSession, outbox: Outbox, environment_id: UUID, tombstone: bool = True) -> bool:
    """Retires the environment in the caller's transaction; False if it was retired before.
    The runners' desired state is rewritten from the database after the commit. Without
    ``tombstone`` (an environment that left the region: a migration here rolled back) it may
    come back later."""
    await repository.lock_environment(session, environment_id)
    if tombstone:
        if not await repository.record_retirement(session, environment_id):
            return False
    elif await repository.is_retired(session, environment_id):
        return False
    # Locking the rollouts waits for a step that is changing one: it then finds it ended.
    for rollout in await repository.lock_unfinished_rollouts(session, environment_id):
        await refuse_rollout(session, outbox, rollout.deployment_id, environment_id,
                             RETIRED if tombstone else MOVED_AWAY)
    workload = await repository.lock_workload(session, environment_id)
    revision = workload.route_revision if workload is not None else 0
    if revision > 0:
        # The route the ingress holds, emptied: it stops serving the hosts.
        revision += 1
        await outbox.add(session, route_emptied(environment_id, revision))
    await repository.forget_environment(session, environment_id, None if tombstone else revision)
    log.info("environment %s retired", environment_id)
    return True


async def refuse_rollout(session: AsyncSession, outbox: Outbox, deployment_id: UUID, environment_id: UUID,
                         reason: str = RETIRED) -> None:
    """Ends the deployment failed without rolling it out: by default because its environment is gone."""
    await outbox.add(session, DeploymentLogAppended(deployment_id=deployment_id, lines=[f"Deployment failed: {reason}"]))
    await outbox.add(session, RolloutFinished(deployment_id=deployment_id, environment_id=environment_id,
                                              success=False, error=reason))
