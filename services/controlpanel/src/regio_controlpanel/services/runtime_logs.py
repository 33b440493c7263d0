"""An environment's runtime logs, as the region's REGIO_LOGS stream holds them (written
there by the runner agents, and by the ingress for each request): read through the region's
own link, on its own server when it has one (messaging/region_links.py)."""
from collections.abc import Callable

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import runtime_logs
from regio_common.runtime_logs import StoredLine

from ..db.models import Application, Environment, Region
from ..domain.errors import ApiError


class RegionUnreachable(ApiError):
    """The region's server does not answer now (its link is cut, or not made yet): its logs
    are kept there, and can be read when it answers again."""
    status_code = 503


async def lines(session: AsyncSession, jetstream: Callable[[str], JetStreamContext], env: Environment,
                app: Application, after: int | None, limit: int,
                service: str | None = None) -> tuple[list[StoredLine], int | None]:
    """Without ``after``: the newest ``limit`` lines. With it: the first ``limit`` lines
    after that stream sequence, for a reader following the log. Oldest first. ``service``
    keeps only one kind of line (a busy site's requests would bury the rest).

    Also the position read up to, which a follower continues from (lines of other services
    read on the way are passed, not returned). ``jetstream(region)``: that region's JetStream
    context (RegionLinks.jetstream; LookupError while the region has none)."""
    region = await session.get(Region, app.region_id)
    if service == runtime_logs.ACCESS:
        subjects = [runtime_logs.access_subject(region.slug, env.id)]
    elif service is not None:
        subjects = [runtime_logs.subject(region.slug, env.id)]
    else:
        subjects = runtime_logs.subjects(region.slug, env.id)
    try:
        read = await runtime_logs.read(jetstream(region.slug), subjects,
                                       **({} if after is None else {"after": after, "limit": limit}))
    except (LookupError, NoRespondersError, ServiceUnavailableError, TimeoutError) as e:
        raise RegionUnreachable(f"The region {region.slug} cannot be reached now; try again later.") from e
    position = read[-1].sequence if read else after
    kept = [stored for stored in read if service is None or stored.line.service == service]
    return (kept[-limit:] if after is None else kept), position
