"""An environment's runtime logs, as the region's REGIO_LOGS stream holds them (written
there by the runner agents, and by the ingress for each request)."""
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import runtime_logs
from regio_common.runtime_logs import StoredLine

from ..db.models import Application, Environment, Region


async def lines(session: AsyncSession, js: JetStreamContext, env: Environment, app: Application,
                after: int | None, limit: int, service: str | None = None) -> tuple[list[StoredLine], int | None]:
    """Without ``after``: the newest ``limit`` lines. With it: the first ``limit`` lines
    after that stream sequence, for a reader following the log. Oldest first. ``service``
    keeps only one kind of line (a busy site's requests would bury the rest).

    Also the position read up to, which a follower continues from (lines of other services
    read on the way are passed, not returned)."""
    region = await session.get(Region, app.region_id)
    if service == runtime_logs.ACCESS:
        subjects = [runtime_logs.access_subject(region.slug, env.id)]
    elif service is not None:
        subjects = [runtime_logs.subject(region.slug, env.id)]
    else:
        subjects = runtime_logs.subjects(region.slug, env.id)
    read = await runtime_logs.read(js, subjects, **({} if after is None else {"after": after, "limit": limit}))
    position = read[-1].sequence if read else after
    kept = [stored for stored in read if service is None or stored.line.service == service]
    return (kept[-limit:] if after is None else kept), position
