"""First start of a region: the default public region and the services it offers, a plan,
an admin user, an organisation and an API token. Idempotent; prints JSON with the token only when
it was created now (tokens are shown once)."""
import argparse
import asyncio
import json
import os
from pathlib import Path

from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker

from .db.models import Membership, Organisation, PhysicalRegion, Region, User
from .services import catalogue, price_list, tokens
from .services.crypto import Vault
from .settings import Settings
from .web import passwords


async def seed(settings: Settings, region_slug: str, domain: str, email: str,
               servers: dict[str, dict] | None = None, admin_password: str | None = None,
               trust_region_domain: bool = False, local_repository_sources: bool = False) -> dict:
    """``servers``: for a service identifier (postgres-18, s3), where the region's server for
    it is and how to administer it (see services/provisioning.py); stored encrypted.
    ``admin_password``: the admin's password for the web Control Panel (stored hashed; set
    again whenever it differs, so changing the file resets it).
    ``trust_region_domain``: the region needs no DNS proof for custom domains under its own
    domain: one operator's machine (set at every `regio up`; `regio region set` changes it between).
    ``local_repository_sources``: the region builds from local (file://) repositories and hosts at
    private addresses: one operator's machine (`regio region set` changes it)."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    created: dict = {}
    try:
        async with sessions() as session, session.begin():
            region = (await session.execute(select(Region).where(Region.slug == region_slug))).scalar_one_or_none()
            if region is None:
                physical = PhysicalRegion(name=f"{region_slug} (this machine)", vendor="self-hosted", location="localhost")
                session.add(physical)
                await session.flush()
                default_exists = (await session.execute(select(Region.id).where(Region.is_default))).first()
                region = Region(slug=region_slug, name=f"Local ({region_slug})", domain=domain,
                                physical_region_id=physical.id, is_default=not default_exists,
                                free_plan=not default_exists)
                session.add(region)
                await session.flush()
            # Every time: its site URLs follow the ingress's port when `regio up` moves it.
            region.site_port = None if settings.ingress_port == 80 else settings.ingress_port
            if settings.ingress_address:  # where other regions forward a migrated environment's hosts
                region.ingress_address = settings.ingress_address
            if trust_region_domain:  # every time, as below: a local region made before gets it
                region.trust_region_domain = True
            if local_repository_sources:  # every time: a local region made before these settings gets them
                region.allow_local_repositories = True
                region.allow_private_repository_hosts = True
            await catalogue.ensure_offered(session, region.id)
            await catalogue.register_servers(session, Vault(settings.secrets_key, settings.region_key), region.id,
                                             servers or {})
            await price_list.ensure_seeded(session, settings.billing_currency)
            admin = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
            if admin is None:
                admin = User(email=email, first_name="Regio", last_name="Admin", is_staff=True)
                org = Organisation(name="Default organisation")
                session.add_all([admin, org])
                await session.flush()
                session.add(Membership(organisation_id=org.id, user_id=admin.id, role="owner"))
                created["token"] = await tokens.create(session, admin, name="regio up")
                created["organisation"] = str(org.id)
            if admin_password and not passwords.verify_password(admin_password, admin.password_hash):
                admin.password_hash = passwords.hash_password(admin_password)
            await session.flush()
            created["region"] = str(region.id)
    finally:
        await engine.dispose()
    return created


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--region", default="local")
    parser.add_argument("--domain", default="local.regio.localhost")
    parser.add_argument("--email", default=os.environ.get("REGIO_ADMIN_EMAIL", "admin@regio.localhost"))
    parser.add_argument("--servers", type=Path, help="JSON file: the region's servers by service identifier")
    parser.add_argument("--admin-password-file", type=Path, help="the admin's web sign-in password (first line)")
    parser.add_argument("--trust-region-domain", action="store_true",
                        help="the region trusts custom domains under its own domain without a DNS record")
    parser.add_argument("--local-repository-sources", action="store_true",
                        help="the region builds from file:// repositories and hosts at private addresses")
    args = parser.parse_args()
    servers = json.loads(args.servers.read_text()) if args.servers else None
    password = args.admin_password_file.read_text().splitlines()[0] if args.admin_password_file else None
    print(json.dumps(asyncio.run(seed(Settings(), args.region, args.domain, args.email, servers, password,
                                      trust_region_domain=args.trust_region_domain,
                                      local_repository_sources=args.local_repository_sources))))


if __name__ == "__main__":
    main()
