"""Routing an environment's hosts to the healthy instances of what it serves now, without a
deployment: after a domain change, a scale, or an instance replaced."""
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.outbox import Outbox

from ..db import repository
from ..db.models import Workload
from .table import routes_changed


async def reroute(session: AsyncSession, outbox: Outbox, workload: Workload) -> int:
    """Sends the workload's full route under a new revision (the workload row must be locked);
    returns the revision."""
    workload.route_revision += 1
    serving = await repository.healthy_instances(session, workload.current_deployment_id)
    await outbox.add(session, routes_changed(workload, serving))
    return workload.route_revision
