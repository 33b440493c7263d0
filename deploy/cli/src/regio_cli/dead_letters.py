"""`regio dead-letters`: the messages the region's services could not publish or handle, each
with what it belonged to and why, read from the region's dead-letter stream (bus.DEAD_LETTERS)."""
import asyncio

from nats.js.errors import NotFoundError

from regio_common import bus, nats_auth
from regio_common.dead_letters import listed
from regio_common.messages import MessageSetAside

from .region import Region


def table(region: Region, limit: int) -> list[str]:
    try:
        records = asyncio.run(_read(region, limit))
    except NotFoundError:  # declared by `regio up`: a region set up before it has none yet
        records = []
    return rows(records)


def rows(records: list[MessageSetAside]) -> list[str]:
    """Oldest first; the reason last, whole, since it is what the operator came for."""
    lines = [f"{'SET ASIDE AT':19} {'BY (SERVICE/CONSUMER)':40} {'KIND':24} {'BYTES':>8} "
             f"{'DEPLOYMENT / ENVIRONMENT':36} REASON"]
    for r in records:
        by = f"{r.service}/{r.consumer}" if r.consumer else f"{r.service} (outbox)"
        about = r.deployment_id or r.environment_id or ""
        lines.append(f"{r.occurred_at:%Y-%m-%d %H:%M:%S} {by:40} {r.message_kind:24} {r.size_bytes:>8} "
                     f"{str(about):36} {r.reason}")
    return lines


async def _read(region: Region, limit: int) -> list[MessageSetAside]:
    nc = await bus.connect(region.nats_url, "regio-cli", nats_auth.ADMIN, region.nats_password(nats_auth.ADMIN))
    try:
        return await listed(nc.jetstream(), region.layout.region, limit)
    finally:
        await nc.close()
