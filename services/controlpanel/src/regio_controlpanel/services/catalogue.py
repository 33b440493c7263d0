"""The services every region offers out of the box (its PostgreSQL and its SeaweedFS), where
their servers are, and the database servers organisations have of their own."""
import json
import logging
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Organisation, Service
from ..domain.service_instances import ServiceType
from .crypto import Vault

log = logging.getLogger(__name__)

STANDARD = (
    dict(identifier="postgres-18", type=ServiceType.DATABASE, name="PostgreSQL 18", version="18",
         description="A PostgreSQL 18 database on the region's database server."),
    dict(identifier="s3", type=ServiceType.STORAGE, name="S3 object storage (SeaweedFS)", version="",
         description="An S3 bucket on the region's SeaweedFS."),
)


async def ensure_offered(session: AsyncSession, region_id: UUID) -> None:
    """Adds what the region lacks; leaves alone what an operator already has (or changed)."""
    offered = set((await session.execute(select(Service.identifier).where(Service.region_id == region_id))).scalars())
    for standard in STANDARD:
        if standard["identifier"] not in offered:
            session.add(Service(region_id=region_id, **standard))
    await session.flush()


DEDICATED_DATABASE = dict(type=ServiceType.DATABASE, version="18",
                          name="PostgreSQL 18 (dedicated server)",
                          description="A PostgreSQL 18 database on your organisation's own server in this region.")


async def register_servers(session: AsyncSession, vault: Vault, region_id: UUID, servers: dict) -> None:
    """Where the region's own services run (their addresses may change between starts), and
    under "dedicated" the database servers of organisations that have their own."""
    servers = dict(servers)
    for dedicated in servers.pop("dedicated", []):
        organisation_id = UUID(dedicated["organisation"])
        if await session.get(Organisation, organisation_id) is None:
            log.warning("no organisation %s: its dedicated database server is not registered", organisation_id)
            continue
        await register_dedicated_database(session, vault, region_id, organisation_id, dedicated["connection"])
    for identifier, connection in servers.items():
        service = (await session.execute(select(Service).where(
            Service.region_id == region_id, Service.identifier == identifier,
            Service.organisation_id.is_(None)))).scalar_one()
        service.connection_encrypted = vault.encrypt(json.dumps(connection))
    await session.flush()


async def register_dedicated_database(session: AsyncSession, vault: Vault, region_id: UUID, organisation_id: UUID,
                                      connection: dict) -> Service:
    """The organisation's own database server: its environments' new databases are made there."""
    identifier = f"postgres-18-dedicated-{organisation_id.hex[:12]}"  # identifiers are unique in a region
    service = (await session.execute(select(Service).where(
        Service.region_id == region_id, Service.identifier == identifier))).scalar_one_or_none()
    if service is None:
        service = Service(region_id=region_id, organisation_id=organisation_id, identifier=identifier,
                          **DEDICATED_DATABASE)
        session.add(service)
    service.connection_encrypted = vault.encrypt(json.dumps(connection))
    await session.flush()
    return service
