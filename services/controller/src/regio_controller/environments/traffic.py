"""EnvironmentTrafficSet: during a migration's cut-over the control panel holds an environment's
requests at this region's ingress, releases them (serve), or forwards its hosts to the region
it moved to. The mode is state of the workload, so every route published for it later (the
healer's, a rollout's) keeps it (routes/table.py). The command only records the mode and
publishes the route; environments/traffic_watch.py tells the control panel once it is in effect."""
import ipaddress
import logging
import re

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentTrafficChanged, EnvironmentTrafficSet, Traffic, utcnow
from regio_common.outbox import Outbox

from ..db import repository
from ..routes.reroute import reroute

log = logging.getLogger(__name__)

MODES = (Traffic.SERVE, Traffic.HOLD, Traffic.FORWARD)
MAX_FORWARD_HOSTS = 500
HOST_NAME = re.compile(r"(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
MAX_HOST_NAME = 253
UNKNOWN = "the environment serves nothing in this region"


def forward_problem(change: EnvironmentTrafficSet) -> str | None:
    """Why a FORWARD cannot be made as asked; None if it can."""
    if not change.forward_to or len(change.forward_to) > 261:
        return "forward_to: an address host:port is required"
    host, _, port = change.forward_to.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"forward_to: {change.forward_to!r} is not host:port"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not HOST_NAME.fullmatch(host) or len(host) > MAX_HOST_NAME:
            return f"forward_to: {change.forward_to!r} is not host:port"
    if not change.hosts:
        return "hosts: at least one host to forward is required"
    if len(change.hosts) > MAX_FORWARD_HOSTS:
        return f"hosts: at most {MAX_FORWARD_HOSTS}"
    for host in change.hosts:
        if len(host) > MAX_HOST_NAME or not HOST_NAME.fullmatch(host.lower().rstrip(".")):
            return f"hosts: {host[:100]!r} is not a host name"
    if change.forward_until is None or change.forward_until.tzinfo is None:
        return "forward_until: a time with its zone is required"
    return None


async def set_traffic(session: AsyncSession, outbox: Outbox, change: EnvironmentTrafficSet) -> bool:
    """Records the change in the caller's transaction; True when the traffic watch has a report to make."""
    environment_id = change.environment_id
    await repository.lock_environment(session, environment_id)
    workload = await repository.lock_workload(session, environment_id)

    async def refuse(error: str) -> bool:
        log.warning("environment %s: traffic change %s to %s refused: %s", environment_id, change.change_id,
                    change.mode, error)
        await outbox.add(session, EnvironmentTrafficChanged(environment_id=environment_id, change_id=change.change_id,
                                                            mode=change.mode, error=error))
        return False

    if workload is None or workload.current_deployment_id is None:
        return await refuse(UNKNOWN)
    if workload.traffic_change_id == change.change_id:
        # The same change again (at-least-once, or the control panel asking once more): once
        # reported, say it again, for whoever waits; else the watch reports it when it is in effect.
        if workload.traffic_reported:
            await outbox.add(session, EnvironmentTrafficChanged(environment_id=environment_id,
                                                                change_id=change.change_id, mode=workload.traffic))
        return False
    if change.mode not in MODES:
        return await refuse(f"mode: one of {', '.join(MODES)}")
    if workload.traffic == Traffic.FORWARD:
        # Its instances here are stopped: nothing to serve or hold any more.
        return await refuse(f"the environment is forwarded to {workload.forward_to} already")
    if change.mode == Traffic.FORWARD:
        if problem := forward_problem(change):
            return await refuse(problem)
        hosts = list(dict.fromkeys(h.lower().rstrip(".") for h in change.hosts))
        if taken := await repository.hosts_served_elsewhere(session, environment_id, hosts):
            # Another environment's hosts (maybe another organisation's) are never taken over.
            return await refuse(f"hosts: {', '.join(taken[:5])} served by another environment here")
        workload.forward_to = change.forward_to
        workload.forward_hosts = hosts
        workload.forward_until = change.forward_until
    workload.traffic = change.mode
    workload.traffic_change_id = change.change_id
    workload.traffic_changed_at = utcnow()
    workload.traffic_reported = False
    workload.traffic_revision = await reroute(session, outbox, workload)
    log.info("environment %s: traffic %s (change %s, route revision %d)", environment_id, change.mode,
             change.change_id, workload.traffic_revision)
    return True
