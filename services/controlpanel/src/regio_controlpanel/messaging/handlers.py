"""The control panel reads each region's events through one ordered consumer, so a
deployment's log lines, its build result and its rollout result are applied in the
order they were published. The controller's environment events come the same way. The
provisioning, backup and restore commands it sends itself have a consumer each, so a long
backup holds up neither deployments nor restores."""
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.bus import durable_name
from regio_common.messages import (
    BackupRequested,
    BackupRestoreRequested,
    BuildFinished,
    BuildStarted,
    DeploymentLogAppended,
    EnvironmentEvent,
    Message,
    ProvisioningRequested,
    RolloutFinished,
    RolloutProgressed,
    ServiceDataDeletionRequested,
    subject_for,
)

from ..services import environment_events, service_instances
from ..services.backups import Backups
from ..services.crypto import Vault
from ..services.deployments import Deployments


def subject(region: str) -> str:
    return f"region.{region}.events.>"


def durable(region: str) -> str:
    return durable_name("controlpanel-events", region)


def provisioning_subject(region: str) -> str:
    return subject_for(ProvisioningRequested, region)


def provisioning_durable(region: str) -> str:
    return durable_name("controlpanel-provisioning", region)


def provisioning_handler(deployments: Deployments):
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, ProvisioningRequested):
            await deployments.on_provisioning_requested(session, message)

    return handle


def deletions_subject(region: str) -> str:
    return subject_for(ServiceDataDeletionRequested, region)


def deletions_durable(region: str) -> str:
    return durable_name("controlpanel-service-deletions", region)


def deletions_handler(vault: Vault):
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, ServiceDataDeletionRequested):
            await service_instances.on_data_deletion_requested(session, vault, message)

    return handle


def backups_subject(region: str) -> str:
    return subject_for(BackupRequested, region)


def backups_durable(region: str) -> str:
    return durable_name("controlpanel-backups", region)


def restores_subject(region: str) -> str:
    return subject_for(BackupRestoreRequested, region)


def restores_durable(region: str) -> str:
    return durable_name("controlpanel-restores", region)


def backups_handler(backups: Backups):
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, BackupRequested):
            await backups.on_backup_requested(session, message)

    return handle


def restores_handler(backups: Backups):
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, BackupRestoreRequested):
            await backups.on_restore_requested(session, message)

    return handle


def dispatcher(deployments: Deployments):
    routes = {
        DeploymentLogAppended: deployments.on_log,
        BuildStarted: deployments.on_build_started,
        BuildFinished: deployments.on_build_finished,
        RolloutProgressed: deployments.on_rollout_progressed,
        RolloutFinished: deployments.on_rollout_finished,
        EnvironmentEvent: environment_events.record,
    }

    async def handle(session: AsyncSession, message: Message) -> None:
        handler = routes.get(type(message))
        if handler is not None:  # other services' events (routes, …) are not ours
            await handler(session, message)

    return handle
