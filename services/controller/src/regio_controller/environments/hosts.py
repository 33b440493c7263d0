"""An environment's hosts changed without a deployment: what runs now serves the new hosts."""
import logging
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.outbox import Outbox

from ..db import repository
from ..routes.reroute import reroute

log = logging.getLogger(__name__)


async def change_hosts(session: AsyncSession, outbox: Outbox, environment_id: UUID, hosts: list[str]) -> None:
    await repository.lock_environment(session, environment_id)
    # A rollout not routed yet would route the hosts it was requested with: it takes the new ones.
    for rollout in await repository.lock_unfinished_rollouts(session, environment_id):
        rollout.hosts = list(hosts)
    workload = await repository.lock_workload(session, environment_id)
    if workload is None:
        # Never rolled out, or retired: the first rollout's request carries the hosts.
        log.info("hosts of environment %s changed before any rollout; nothing to route", environment_id)
        return
    if workload.hosts == list(hosts):
        return
    workload.hosts = list(hosts)
    if workload.current_deployment_id is None:
        return  # nothing serves yet: the rollout that finalizes routes them
    await reroute(session, outbox, workload)
    log.info("environment %s: routing %s (route revision %d)", environment_id, ", ".join(hosts) or "no hosts",
             workload.route_revision)
