"""An environment's runtime logs, as the region's REGIO_LOGS stream holds them (written
there by the runner agents, and by the ingress for each request)."""
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import runtime_logs
from regio_common.runtime_logs import StoredLine

from ..db.models import Application, Environment, Region


async def lines(session: AsyncSession, js: JetStreamContext, env: Environment, app: Application,
                after: int | None, limit: int) -> list[StoredLine]:
    """Without ``after``: the newest ``limit`` lines. With it: the first ``limit`` lines
    after that stream sequence, for a reader following the log. Oldest first."""
    region = await session.get(Region, app.region_id)
    subjects = runtime_logs.subjects(region.slug, env.id)
    if after is None:
        return (await runtime_logs.read(js, subjects))[-limit:]
    return await runtime_logs.read(js, subjects, after=after, limit=limit)
