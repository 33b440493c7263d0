"""An environment's hosts changed without a deployment (its domains, its redirect domains or
its HTTPS redirect): what runs now is routed the new way."""
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentHostsChanged
from regio_common.outbox import Outbox

from ..db import repository
from ..routes.reroute import reroute

log = logging.getLogger(__name__)


async def change_hosts(session: AsyncSession, outbox: Outbox, change: EnvironmentHostsChanged) -> None:
    environment_id = change.environment_id
    hosts, redirect_hosts = list(change.hosts), list(change.redirect_hosts)
    await repository.lock_environment(session, environment_id)
    # A rollout not routed yet would route what it was requested with: it takes the new routing.
    for rollout in await repository.lock_unfinished_rollouts(session, environment_id):
        rollout.hosts, rollout.redirect_hosts, rollout.https_redirect = hosts, redirect_hosts, change.https_redirect
    workload = await repository.lock_workload(session, environment_id)
    if workload is None:
        # Never rolled out, or retired: the first rollout's request carries the hosts.
        log.info("hosts of environment %s changed before any rollout; nothing to route", environment_id)
        return
    routing = (hosts, redirect_hosts, change.https_redirect)
    if (workload.hosts, workload.redirect_hosts, workload.https_redirect) == routing:
        return
    workload.hosts, workload.redirect_hosts, workload.https_redirect = routing
    if workload.current_deployment_id is None:
        return  # nothing serves yet: the rollout that finalizes routes them
    await reroute(session, outbox, workload)
    log.info("environment %s: routing %s%s%s (route revision %d)", environment_id, ", ".join(hosts) or "no hosts",
             f", redirecting {', '.join(redirect_hosts)}" if redirect_hosts else "",
             ", HTTP to HTTPS" if change.https_redirect else "", workload.route_revision)
