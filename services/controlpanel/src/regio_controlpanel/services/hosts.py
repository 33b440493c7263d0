"""The one rule every path that gives an environment a host goes through (a new application's
test and live, a custom environment, a verified custom domain): no two environments ever
share a host. The claimed_hosts primary key holds it when requests race; the check before
the insert only gives the loser a message that names the host."""
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, ClaimedHost, Environment, Region
from ..domain.environments import default_domain
from ..domain.errors import Conflict


class HostTaken(Conflict):
    def __init__(self, host: str, field: str):
        # Names the host, never who has it: the other environment may be another organisation's.
        super().__init__(f"The host {host} already belongs to another environment.", field)
        self.host = host


async def claim(session: AsyncSession, environment_id: UUID, hosts: list[str], field: str,
                domain_id: UUID | None = None) -> None:
    """Gives ``hosts`` to the environment, or raises HostTaken (a 409 on ``field``)."""
    taken = (await session.execute(select(ClaimedHost.host).where(ClaimedHost.host.in_(hosts))
                                   .order_by(ClaimedHost.host).limit(1))).scalar_one_or_none()
    if taken is not None:
        raise HostTaken(taken, field)
    try:
        # A savepoint, so a caller that handles the conflict (a verification) keeps its session.
        async with session.begin_nested():
            session.add_all([ClaimedHost(host=h, environment_id=environment_id, domain_id=domain_id) for h in hosts])
    except IntegrityError as e:  # claimed by a request that committed after the check above
        raise HostTaken(hosts[0] if len(hosts) == 1 else ", ".join(hosts), field) from e


async def claim_default(session: AsyncSession, apps_and_envs: list[tuple[Application, Environment]],
                        field: str = "slug") -> None:
    """The default hosts of new environments (``<app>``, ``<app>-stage``, ``<app>-<env>``)."""
    if not apps_and_envs:
        return
    region = await session.get(Region, apps_and_envs[0][0].region_id)
    for app, env in apps_and_envs:
        await claim(session, env.id, [default_domain(app.slug, env.slug, region.domain)], field)


async def is_taken(session: AsyncSession, host: str) -> bool:
    return (await session.execute(select(ClaimedHost.host).where(ClaimedHost.host == host))).first() is not None
