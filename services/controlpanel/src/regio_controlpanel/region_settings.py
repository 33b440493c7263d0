"""An operator's settings of a region (`regio region set`): the DNS resolver that custom
domains' TXT challenges are looked up through, and whether names under the region's own
domain are trusted without one. Prints the region's settings as JSON."""
import argparse
import asyncio
import json

from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker

from .db.models import Region
from .region_services.dns import parse_resolver
from .settings import Settings


async def configure(settings: Settings, region_slug: str, *, dns_resolver: str | None = None,
                    trust_region_domain: bool | None = None, allow_local_repositories: bool | None = None,
                    allow_private_repository_hosts: bool | None = None, free_plan: bool | None = None) -> dict:
    """``dns_resolver``: ``host[:port]``, or "" for the system's resolver; None leaves it as it is."""
    if dns_resolver:
        parse_resolver(dns_resolver)  # ValueError: said before anything changes
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            region = (await session.execute(select(Region).where(Region.slug == region_slug))).scalar_one_or_none()
            if region is None:
                raise LookupError(f"no region {region_slug!r}")
            if dns_resolver is not None:
                region.dns_resolver = dns_resolver.strip() or None
            if trust_region_domain is not None:
                region.trust_region_domain = trust_region_domain
            if allow_local_repositories is not None:
                region.allow_local_repositories = allow_local_repositories
            if allow_private_repository_hosts is not None:
                region.allow_private_repository_hosts = allow_private_repository_hosts
            if free_plan is not None:
                region.free_plan = free_plan
            return {"region": region.slug, "domain": region.domain, "dns_resolver": region.dns_resolver,
                    "trust_region_domain": region.trust_region_domain,
                    "allow_local_repositories": region.allow_local_repositories,
                    "allow_private_repository_hosts": region.allow_private_repository_hosts,
                    "free_plan": region.free_plan}
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("region")
    parser.add_argument("--dns-resolver", help='host[:port] of the resolver; "" for the system\'s')
    parser.add_argument("--trust-region-domain", choices=("on", "off"))
    parser.add_argument("--local-repositories", choices=("on", "off"))
    parser.add_argument("--private-repository-hosts", choices=("on", "off"))
    parser.add_argument("--free", choices=("on", "off"), help="whether the free plan group may use the region")
    args = parser.parse_args()
    trust = None if args.trust_region_domain is None else args.trust_region_domain == "on"
    local = None if args.local_repositories is None else args.local_repositories == "on"
    private = None if args.private_repository_hosts is None else args.private_repository_hosts == "on"
    free = None if args.free is None else args.free == "on"
    try:
        result = asyncio.run(configure(Settings(), args.region, dns_resolver=args.dns_resolver,
                                       trust_region_domain=trust, allow_local_repositories=local,
                                       allow_private_repository_hosts=private, free_plan=free))
    except (ValueError, LookupError) as e:
        parser.exit(2, f"{e}\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
