"""Whether a command the control panel sent itself through a region is about that region.

The control panel's own commands (provisioning, backups, restores, deletions) travel through
the region's stream, on the region's own server: whoever holds that server's credentials (its
operator, a dedicated region's owner included) can write there too. So a command read from a
region is carried out only for what belongs to that region: never another region's backups,
storage or databases."""
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import (
    BackupFilesDeletionRequested,
    BackupRequested,
    BackupRestoreRequested,
    Message,
    ProvisioningRequested,
    ServiceDataDeletionRequested,
)

from ..db.models import Application, Backup, BackupRestore, Deployment, Environment, Region, Service
from ..domain.backups import backup_folder


def _of_environment(environment_id) -> select:
    return (select(Region.slug).join(Application, Application.region_id == Region.id)
            .join(Environment, Environment.application_id == Application.id).where(Environment.id == environment_id))


def _backup_folder(prefix: str) -> bool:
    """Only what the control panel names: one backup's folder, never the whole bucket."""
    try:
        return backup_folder(UUID(prefix.removeprefix("backups/").removesuffix("/"))) == prefix
    except ValueError:
        return False


async def region_of(session: AsyncSession, message: Message) -> str | None:
    """The slug of the region what ``message`` names is in; None if it names nothing of any
    (unknown, deleted since, or not what the control panel sends)."""
    match message:
        case ProvisioningRequested():
            environment = select(Deployment.environment_id).where(Deployment.id == message.deployment_id)
            return await session.scalar(_of_environment(environment.scalar_subquery()))
        case BackupRequested():
            environment = select(Backup.environment_id).where(Backup.id == message.backup_id)
            return await session.scalar(_of_environment(environment.scalar_subquery()))
        case BackupRestoreRequested():
            environment = select(BackupRestore.environment_id).where(BackupRestore.id == message.restore_id)
            return await session.scalar(_of_environment(environment.scalar_subquery()))
        case BackupFilesDeletionRequested() if all(_backup_folder(p) for p in message.prefixes):
            return await _of_service(session, message.storage_service_id)
        case ServiceDataDeletionRequested():
            return await _of_service(session, message.service_id)
    return None


async def _of_service(session: AsyncSession, service_id: UUID) -> str | None:
    return await session.scalar(select(Region.slug).join(Service, Service.region_id == Region.id)
                                .where(Service.id == service_id))
