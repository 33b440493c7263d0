"""Custom domains of an environment: one primary, aliases served alongside it, and
redirects to it. A domain is routed once verified (services/domain_verification.py), and
then belongs to that one environment in the whole platform (services/hosts.py)."""
import re
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentHostsChanged
from regio_common.outbox import Outbox

from ..db.models import Application, Domain, Environment, Region
from ..domain.environments import default_domain
from ..domain.errors import ApiError, Conflict, NotFound
from ..region_services import dns
from . import domain_verification, hosts, migrations, plan_limits
from .access import Action, Caller
from .crypto import Vault
from .domain_verification import Verification

HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# The challenge's name ("_regio-challenge." and the domain) must fit in DNS's 253 characters too.
MAX_DOMAIN = 253 - len(domain_verification.record_name(""))


class Kind(StrEnum):
    PRIMARY = "PRIMARY"
    ALIAS = "ALIAS"
    REDIRECT = "REDIRECT"


@dataclass
class Hosts:
    """What a release is told (DOMAIN, DOMAIN_ALIASES, DOMAIN_REDIRECTS) and the ingress routes."""

    primary: str
    aliases: list[str] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)

    @property
    def served(self) -> list[str]:
        """Proxied to the release; the redirects are answered by the ingress with a 301 to the primary."""
        return [self.primary, *self.aliases]


async def hosts_of(session: AsyncSession, env: Environment, app: Application, region: Region) -> Hosts:
    """The default domain stays served: as DOMAIN, or as an alias once a custom primary exists.
    Only verified domains count: one not yet proven is neither routed nor told to the release."""
    default = default_domain(app.slug, env.slug, region.domain)
    rows = (await session.execute(select(Domain).where(
        Domain.environment_id == env.id, Domain.verification_status == Verification.VERIFIED)
        .order_by(Domain.created_at))).scalars().all()
    primary = next((d.domain for d in rows if d.kind == Kind.PRIMARY), None)
    # A migrated environment also serves its old region's default domain for a while.
    aliases = [d.domain for d in rows if d.kind == Kind.ALIAS] + await migrations.old_hosts_served(session, env, region)
    redirects = [d.domain for d in rows if d.kind == Kind.REDIRECT]
    if primary is None:
        return Hosts(default, aliases, redirects)
    return Hosts(primary, [*aliases, default], redirects)


async def verified_of_application(session: AsyncSession, application_id: UUID) -> list[str]:
    """The application's custom domains that are routed (verified), in name order."""
    return list((await session.execute(select(Domain.domain).join(Environment).where(
        Environment.application_id == application_id, Domain.verification_status == Verification.VERIFIED)
        .order_by(Domain.domain))).scalars())


async def get_domain(session: AsyncSession, caller: Caller, domain_id: UUID,
                     action: Action) -> tuple[Domain, Environment, Application]:
    row = (await session.execute(
        select(Domain, Environment, Application).join(Environment, Environment.id == Domain.environment_id)
        .join(Application, Application.id == Environment.application_id).where(Domain.id == domain_id))).first()
    if row is None:
        raise NotFound()
    caller.require_environment(row[1], row[2], action)
    return row[0], row[1], row[2]


def normalise(name: str) -> str:
    return name.strip().lower().removesuffix(".")


async def add_domain(session: AsyncSession, vault: Vault, env: Environment, app: Application, name: str,
                     kind: Kind) -> Domain:
    """Verified at once when its TXT record is already there (or the region trusts the name);
    else pending until ``verify``. A pending name does not keep anyone else from adding it:
    whoever proves control first gets its host."""
    await migrations.refuse_while_hosts_move(session, app.id, "add domains")
    plan_limits.check_custom_domains(await plan_limits.plan_of(session, app))
    name = normalise(name)
    if not HOSTNAME.match(name):
        raise ApiError("Enter a host name such as www.example.com (no scheme, port or path).", "domain")
    if len(name) > MAX_DOMAIN:  # else it is added, but its TXT record cannot exist: never verified
        raise ApiError(f"A domain has at most {MAX_DOMAIN} characters here: its TXT record's name, "
                       f"{domain_verification.record_name('<domain>')}, must fit in DNS's 253.", "domain")
    region = await session.get(Region, app.region_id)
    # A name under regions' domains is the closest one's (a region's domain may be under
    # another's): allowed only there, and only when that region trusts its own names.
    under = [d for d in (await session.execute(select(Region.domain))).scalars()
             if name == d or name.endswith("." + d)]
    if under and not (max(under, key=len) == region.domain and domain_verification.trusted(region, name)):
        raise ApiError("Names under a region's domain are its default domains; use a domain of your own.", "domain")
    if await hosts.is_taken(session, name):
        raise hosts.HostTaken(name, "domain")
    if (await session.execute(select(Domain.id).where(Domain.environment_id == env.id,
                                                      Domain.domain == name))).first():
        raise Conflict("This environment already has this domain.", "domain")
    if kind == Kind.PRIMARY:  # the verified primary stays until this one is verified
        await _demote_waiting_primary(session, env.id)
    domain = Domain(environment_id=env.id, domain=name, kind=kind, verification_status=Verification.PENDING)
    session.add(domain)
    try:
        await session.flush()
    except IntegrityError as e:  # added concurrently to this environment
        raise Conflict("This environment already has this domain.", "domain") from e
    try:
        await domain_verification.verify(session, vault, domain, env, app, region)
    except dns.LookupBusy:
        pass  # added all the same, pending: checked by `verify` or its periodic re-check
    return domain


class LookupsBusy(ApiError):
    """No DNS look-up slot was free: the check was not made, the domain's state stands."""
    status_code = 503


async def verify(session: AsyncSession, vault: Vault, domain: Domain, env: Environment, app: Application) -> bool:
    """Checks the domain's TXT record again; True when it became routed now. One check of a
    domain at a time: two at once (a double click, or the periodic re-check) would both pass
    the look-up and the loser would write "failed" over the winner's "verified"."""
    # Without waiting: a request waiting for the lock would hold its database connection for
    # as long as the other check's look-up lasts, the stall that region_services/dns.py bounds.
    # Read again once locked: the status may have changed since the domain was loaded.
    locked = (await session.execute(select(Domain).where(Domain.id == domain.id).with_for_update(skip_locked=True)
                                    .execution_options(populate_existing=True))).scalar_one_or_none()
    if locked is None:
        raise Conflict("This domain is being checked right now; see its state in a few seconds.")
    region = await session.get(Region, app.region_id)
    try:
        return await domain_verification.verify(session, vault, domain, env, app, region)
    except dns.LookupBusy as e:
        raise LookupsBusy(str(e)) from e


def is_routed(domain: Domain) -> bool:
    return domain.verification_status == Verification.VERIFIED


async def change_kind(session: AsyncSession, domain: Domain, kind: Kind) -> bool:
    """A verified domain made the primary takes over at once; one still pending, once verified."""
    if domain.kind == kind:
        return False
    if kind == Kind.PRIMARY:
        await _demote_waiting_primary(session, domain.environment_id)
        if is_routed(domain):
            await domain_verification.demote_primary(session, domain.environment_id)
    domain.kind = kind
    await session.flush()
    return True


async def remove_domain(session: AsyncSession, outbox: Outbox, domain: Domain, env: Environment,
                        app: Application) -> None:
    """The domain goes (its host with it, by cascade) and the environment's routes follow."""
    await migrations.refuse_while_hosts_move(session, app.id, "remove domains")
    await session.delete(domain)
    await session.flush()
    await announce(session, outbox, env, app)


async def announce(session: AsyncSession, outbox: Outbox, env: Environment, app: Application) -> None:
    """The controller re-routes what runs now (domains, redirects and the HTTPS redirect); the
    next release gets the new DOMAIN variables."""
    region = await session.get(Region, app.region_id)
    hosts = await hosts_of(session, env, app, region)
    await outbox.add(session, EnvironmentHostsChanged(environment_id=env.id, hosts=hosts.served,
                                                      redirect_hosts=hosts.redirects,
                                                      https_redirect=env.https_redirect), region=region.slug)


async def _demote_waiting_primary(session: AsyncSession, environment_id: UUID) -> None:
    """One primary waits for verification at a time: the one asked for last."""
    await session.execute(update(Domain).where(
        Domain.environment_id == environment_id, Domain.kind == Kind.PRIMARY,
        Domain.verification_status != Verification.VERIFIED).values(kind=Kind.ALIAS))
    await session.flush()
