"""An operator's regions (`regio region add|remove`): add one (or update it: the same
command again is harmless), retire one, list them all. Runs with the control panel's
environment; prints JSON; a refusal goes to stderr with exit status 2. The control panel
serves a region added here within seconds, and stops serving a retired one, without a restart
(messaging/region_links.py)."""
import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import utcnow

from .db.models import Application, Organisation, PhysicalRegion, Region
from .services import catalogue
from .services.crypto import Vault
from .services.domains import HOSTNAME
from .settings import Settings

# A region's slug is a token of NATS subjects, part of database and domain names.
SLUG = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# A JetStream domain is a token of the API's subjects ($JS.<domain>.API).
JETSTREAM_DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# A host name or IPv4 address, and a port: what a proxy dials.
INGRESS_ADDRESS = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?:[0-9]{1,5}$")
VENDORS = ("aws", "azure", "gcp", "exoscale", "other", "self-hosted")
MAX_NAME = 200  # the columns' lengths: name, location, physical region
MAX_SERVERS_FILE = 1024 * 1024


@dataclass(frozen=True)
class RegionSpec:
    slug: str
    name: str
    domain: str
    vendor: str
    location: str
    physical_region: str | None = None  # its name; None: "<vendor> <location>"
    dedicated_to: UUID | None = None
    free_plan: bool | None = None  # None: as it is (off for a new region)
    jetstream_domain: str | None = None
    site_port: int | None = None
    ingress_address: str | None = None  # "host:port" where other regions' ingresses reach it
    servers: dict | None = None
    trust_region_domain: bool = False
    local_repository_sources: bool = False

    def check(self) -> None:
        """ValueError naming what is wrong, before anything is written."""
        if not SLUG.match(self.slug):
            raise ValueError(f"slug {self.slug!r}: lower-case letters, digits and '-', starting with a letter, "
                             f"at most 31 characters")
        for field, value in (("name", self.name), ("location", self.location),
                             ("physical region", self.physical_region or "-")):
            if not value.strip() or len(value) > MAX_NAME:
                raise ValueError(f"{field}: 1 to {MAX_NAME} characters")
        if not HOSTNAME.match(self.domain):
            raise ValueError(f"domain {self.domain!r} is not a host name (lower case, at most 253 characters)")
        if self.vendor not in VENDORS:
            raise ValueError(f"vendor {self.vendor!r}: one of {', '.join(VENDORS)}")
        if self.jetstream_domain is not None and not JETSTREAM_DOMAIN.match(self.jetstream_domain):
            raise ValueError(f"JetStream domain {self.jetstream_domain!r}: letters, digits, '-' and '_', "
                             f"at most 63 characters")
        if self.site_port is not None and not 1 <= self.site_port <= 65535:
            raise ValueError(f"site port {self.site_port}: 1 to 65535")
        if self.ingress_address is not None and not INGRESS_ADDRESS.match(self.ingress_address):
            raise ValueError(f"ingress address {self.ingress_address!r}: host:port")


def shown(region: Region, physical: PhysicalRegion) -> dict:
    return {"slug": region.slug, "name": region.name, "domain": region.domain, "vendor": physical.vendor,
            "location": physical.location, "physical_region": physical.name,
            "dedicated_to": str(region.organisation_id) if region.organisation_id else None,
            "free_plan": region.free_plan, "jetstream_domain": region.jetstream_domain,
            "site_port": region.site_port, "ingress_address": region.ingress_address,
            "retired": region.retired_at is not None}


async def _physical_region(session: AsyncSession, spec: RegionSpec) -> PhysicalRegion:
    name = spec.physical_region or f"{spec.vendor} {spec.location}"
    physical = (await session.execute(select(PhysicalRegion).where(PhysicalRegion.name == name))).scalar_one_or_none()
    if physical is None:
        physical = PhysicalRegion(name=name, vendor=spec.vendor, location=spec.location)
        session.add(physical)
        await session.flush()
    elif (physical.vendor, physical.location) != (spec.vendor, spec.location):
        # Other regions may be in it: its place is not changed from one of them.
        raise ValueError(f"physical region {name!r} is {physical.vendor} {physical.location}, "
                         f"not {spec.vendor} {spec.location}")
    return physical


async def add(session: AsyncSession, vault: Vault, spec: RegionSpec) -> dict:
    """Creates the region, or sets an existing one (a retired one is back in service) to ``spec``."""
    spec.check()
    if spec.dedicated_to is not None and await session.get(Organisation, spec.dedicated_to) is None:
        raise LookupError(f"no organisation {spec.dedicated_to}")
    physical = await _physical_region(session, spec)
    region = (await session.execute(select(Region).where(Region.slug == spec.slug))).scalar_one_or_none()
    new = region is None
    if new:
        default_exists = (await session.execute(select(Region.id).where(Region.is_default))).first()
        region = Region(slug=spec.slug, is_default=not default_exists)
        session.add(region)
    elif region.organisation_id != spec.dedicated_to:
        applications = (await session.execute(
            select(func.count()).select_from(Application).where(Application.region_id == region.id))).scalar_one()
        if applications:
            # Their organisation's applications would be in another's region, or in a public one.
            raise ValueError(f"region {spec.slug} has {applications} application(s): it stays "
                             f"{'dedicated to ' + str(region.organisation_id) if region.organisation_id else 'public'}")
    region.name, region.domain, region.physical_region_id = spec.name, spec.domain, physical.id
    region.organisation_id = spec.dedicated_to
    if spec.free_plan is not None or new:  # when not given, as `regio region set --free` left it
        region.free_plan = bool(spec.free_plan)
    if spec.jetstream_domain is not None or new:
        # Kept when not given: a region behind a leaf node updated without it would otherwise be
        # served on the control panel's own server, where none of its messages are.
        region.jetstream_domain = spec.jetstream_domain
    region.site_port, region.retired_at = spec.site_port, None
    if spec.ingress_address is not None:  # kept when not given, like the JetStream domain
        region.ingress_address = spec.ingress_address
    if spec.trust_region_domain:  # as seed: only ever turned on here (`regio region set` turns it off)
        region.trust_region_domain = True
    if spec.local_repository_sources:
        region.allow_local_repositories = region.allow_private_repository_hosts = True
    await session.flush()
    await catalogue.ensure_offered(session, region.id)
    await catalogue.register_servers(session, vault, region.id, spec.servers or {})
    return shown(region, physical)


async def retire(session: AsyncSession, slug: str) -> dict:
    region = (await session.execute(select(Region).where(Region.slug == slug))).scalar_one_or_none()
    if region is None:
        raise LookupError(f"no region {slug!r}")
    if region.is_default:
        raise ValueError(f"region {slug} is the default region: it cannot be retired")
    if region.retired_at is None:
        region.retired_at = utcnow()
    return shown(region, await session.get(PhysicalRegion, region.physical_region_id))


async def listed(session: AsyncSession) -> list[dict]:
    rows = (await session.execute(select(Region, PhysicalRegion).join(
        PhysicalRegion, PhysicalRegion.id == Region.physical_region_id).order_by(Region.slug))).all()
    return [shown(region, physical) for region, physical in rows]


async def run(settings: Settings, command: str, **args) -> dict | list:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if command == "add":
                return await add(session, Vault(settings.secrets_key, settings.region_key), RegionSpec(**args))
            if command == "retire":
                return await retire(session, args["slug"])
            return await listed(session)
    finally:
        await engine.dispose()


def _servers(path: Path | None) -> dict | None:
    if path is None:
        return None
    if path.stat().st_size > MAX_SERVERS_FILE:
        raise ValueError(f"--servers {path}: over {MAX_SERVERS_FILE} bytes")
    servers = json.loads(path.read_text())
    if not isinstance(servers, dict):
        raise ValueError(f"--servers {path}: a JSON object of servers by service identifier")
    return servers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m regio_controlpanel.regions")
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="add a region, or update it")
    adding.add_argument("slug")
    adding.add_argument("--name", required=True)
    adding.add_argument("--domain", required=True, help="the region's domain: sites get names under it")
    adding.add_argument("--vendor", required=True, choices=VENDORS)
    adding.add_argument("--location", required=True)
    adding.add_argument("--physical-region", help="name of the physical region it is in (default: vendor location)")
    adding.add_argument("--dedicated-to", type=UUID, metavar="ORG_UUID", help="the one organisation that may use it")
    adding.add_argument("--free", action=argparse.BooleanOptionalAction, default=None,
                        help="whether the free plan group may use it (default: as it is; off for a new region)")
    adding.add_argument("--jetstream-domain", help="the JetStream domain of the region's own NATS server, a leaf node")
    adding.add_argument("--site-port", type=int, help="the port its ingress serves sites on (default 80)")
    adding.add_argument("--ingress-address", metavar="HOST:PORT",
                        help="where other regions' ingresses reach its ingress (a migration's forwarding)")
    adding.add_argument("--servers", type=Path, help="JSON file: the region's servers by service identifier")
    adding.add_argument("--trust-region-domain", action="store_true")
    adding.add_argument("--local-repository-sources", action="store_true")
    retiring = commands.add_parser("retire", help="take a region out of service")
    retiring.add_argument("slug")
    commands.add_parser("list")
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            result = asyncio.run(run(Settings(), "add", slug=args.slug, name=args.name, domain=args.domain,
                                     vendor=args.vendor, location=args.location, physical_region=args.physical_region,
                                     dedicated_to=args.dedicated_to, free_plan=args.free,
                                     jetstream_domain=args.jetstream_domain, site_port=args.site_port,
                                     ingress_address=args.ingress_address,
                                     servers=_servers(args.servers), trust_region_domain=args.trust_region_domain,
                                     local_repository_sources=args.local_repository_sources))
        else:
            result = asyncio.run(run(Settings(), args.command, **({"slug": args.slug} if args.command == "retire"
                                                                   else {})))
    except (ValueError, LookupError, OSError) as e:
        parser.exit(2, f"{e}\n")
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
