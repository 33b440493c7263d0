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
    """Gives ``hosts`` to the environment, or raises HostTaken (a 409 on ``field``). A host the
    environment already holds for the same domain is no conflict: two checks of one domain
    that overlapped both find it theirs."""
    others, mine = await _holders(session, environment_id, hosts, domain_id)
    if others:
        raise HostTaken(others[0], field)
    try:
        # A savepoint, so a caller that handles the conflict (a verification) keeps its session.
        async with session.begin_nested():
            session.add_all([ClaimedHost(host=h, environment_id=environment_id, domain_id=domain_id)
                             for h in hosts if h not in mine])
    except IntegrityError as e:  # claimed by a request that committed after the check above
        others, mine = await _holders(session, environment_id, hosts, domain_id)
        if others or set(hosts) - mine:  # lost to another environment (or domain), or some other clash
            raise HostTaken(others[0] if others else ", ".join(hosts), field) from e


async def _holders(session: AsyncSession, environment_id: UUID, hosts: list[str],
                   domain_id: UUID | None) -> tuple[list[str], set[str]]:
    """Of ``hosts``, those another holds (sorted, for a stable message), and those this
    environment holds for this same domain."""
    rows = (await session.execute(select(ClaimedHost.host, ClaimedHost.environment_id, ClaimedHost.domain_id)
                                  .where(ClaimedHost.host.in_(hosts)).order_by(ClaimedHost.host))).all()
    others = [host for host, env, domain in rows if (env, domain) != (environment_id, domain_id)]
    return others, {host for host, *_ in rows} - set(others)


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
