"""The services every region offers out of the box: its PostgreSQL and its SeaweedFS."""
import json
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Service
from ..domain.service_instances import ServiceType
from .crypto import Vault

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


async def register_servers(session: AsyncSession, vault: Vault, region_id: UUID, servers: dict[str, dict]) -> None:
    """Where the region's own services run (their addresses may change between starts)."""
    for identifier, connection in servers.items():
        service = (await session.execute(select(Service).where(
            Service.region_id == region_id, Service.identifier == identifier,
            Service.organisation_id.is_(None)))).scalar_one()
        service.connection_encrypted = vault.encrypt(json.dumps(connection))
    await session.flush()
