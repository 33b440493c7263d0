from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from ...db.models import Backup, BackupDownload, BackupDownloadPart, BackupRestore, ServiceInstanceBackup
from ...services import backup_downloads, backups
from ...services.access import Action
from ..backup_schemas import (
    BackupDownloadIn,
    BackupDownloadOut,
    BackupDownloadServiceInstanceOut,
    BackupIn,
    BackupOut,
    BackupRestoreIn,
    BackupRestoreOut,
    PartDownload,
    ServiceInstanceBackupOut,
)
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router

router = Router(prefix="/apps/v3", tags=["backups"])

WORK = ("The work is done after the answer: poll the object until its state is COMPLETED, then read success.")


def backup_out(b: Backup, parts: list[ServiceInstanceBackup]) -> BackupOut:
    return BackupOut(uuid=b.id, environment=b.environment_id, state=b.state, success=b.success, trigger=b.trigger,
                     notes=b.notes, created_at=b.created_at, ended_at=b.ended_at,
                     scheduled_for_deletion_at=b.scheduled_for_deletion_at,
                     service_instance_backups=[p.id for p in parts])


def part_out(p: ServiceInstanceBackup) -> ServiceInstanceBackupOut:
    return ServiceInstanceBackupOut(uuid=p.id, backup=p.backup_id, service_instance=p.service_instance_id, type=p.type,
                                    service_type=p.type, prefix=p.prefix, state=p.state, success=p.success,
                                    size=p.size, error=p.error, errors=p.error, created_at=p.created_at,
                                    ended_at=p.ended_at)


def restore_out(r: BackupRestore, parts: list[UUID]) -> BackupRestoreOut:
    return BackupRestoreOut(uuid=r.id, backup=r.backup_id, environment=r.environment_id, state=r.state,
                            success=r.success, error=r.error, created_at=r.created_at, ended_at=r.ended_at,
                            service_instance_backups=parts)


def download_out(request: Request, d: BackupDownload) -> BackupDownloadOut:
    url, each = backup_downloads.urls(request.app.state.settings.public_url, request.app.state.vault, d)
    return BackupDownloadOut(uuid=d.id, backup=d.backup_id, service_instance_backups=d.service_instance_backup_ids,
                             trigger=d.trigger, created_at=d.created_at, expires_at=d.expires_at, download_url=url,
                             downloads=[PartDownload(service_instance_backup=k, download_url=v) for k, v in each.items()])


def download_parts_out(request: Request, d: BackupDownload,
                       parts: list[BackupDownloadPart]) -> list[BackupDownloadServiceInstanceOut]:
    _, each = backup_downloads.urls(request.app.state.settings.public_url, request.app.state.vault, d)  # one decrypt
    return [_download_part_out(d, p, each[str(p.service_instance_backup_id)]) for p in parts]


def _download_part_out(d: BackupDownload, p: BackupDownloadPart, url: str) -> BackupDownloadServiceInstanceOut:
    return BackupDownloadServiceInstanceOut(
        uuid=p.id, backup_download=d.id, service_instance_backup=p.service_instance_backup_id, state="COMPLETED",
        success="SUCCESS", errors=None, created_at=d.created_at, ended_at=d.created_at, expires_at=d.expires_at,
        download_url=url)


# --- backups ---------------------------------------------------------------------------------


@router.get("/backups/", response_model=Page[BackupOut])
async def list_backups(request: Request, session: SessionDep, caller: CallerDep,
                       params: Annotated[PageParams, Depends()], environment: UUID | None = None) -> dict:
    """Newest first."""
    async def serialize(rows):
        parts = await backups.parts_of(session, [b.id for b in rows])
        return [backup_out(b, parts[b.id]) for b in rows]

    return await paginate(session, backups.backups_query(caller, environment), request, params, serialize)


@router.post("/backups/", response_model=BackupOut, status_code=201, description=(
        "Backs up the environment's databases (pg_dump) and buckets (their objects) into the region's object "
        "storage. " + WORK))
async def create_backup(request: Request, body: BackupIn, session: SessionDep, caller: CallerDep,
                        audit: AuditDep) -> BackupOut:
    backup, parts, env, app = await request.app.state.backups.request_backup(
        session, caller, body.environment, body.services, body.trigger, body.notes, body.scheduled_for_deletion_at)
    backups.record_backup(audit, backup, parts, env, app)
    return backup_out(backup, parts)


@router.get("/backups/{uuid}/", response_model=BackupOut)
async def get_backup(uuid: UUID, session: SessionDep, caller: CallerDep) -> BackupOut:
    backup, _, _ = await backups.get_backup(session, caller, uuid, Action.VIEW)
    return backup_out(backup, (await backups.parts_of(session, [backup.id]))[backup.id])


@router.get("/service-instance-backups/{uuid}/", response_model=ServiceInstanceBackupOut)
async def get_service_instance_backup(uuid: UUID, session: SessionDep, caller: CallerDep) -> ServiceInstanceBackupOut:
    return part_out(await backups.get_part(session, caller, uuid))


# --- restores --------------------------------------------------------------------------------


@router.post("/backup-restores/", response_model=BackupRestoreOut, status_code=201, description=(
        "Replaces the data of the environment's instances of the same type and prefix with the backup's: a "
        "database becomes exactly the dumped one (its open connections are ended), a bucket holds exactly the "
        "backed-up objects. 409 unless the backup COMPLETED and the parts asked for succeeded. " + WORK))
async def create_backup_restore(request: Request, body: BackupRestoreIn, session: SessionDep, caller: CallerDep,
                                audit: AuditDep) -> BackupRestoreOut:
    restore, parts, env, app = await request.app.state.backups.request_restore(
        session, caller, body.backup, body.service_instance_backups, body.environment)
    backups.record_restore(audit, restore, parts, env, app)
    return restore_out(restore, [p.id for p in parts])


@router.get("/backup-restores/{uuid}/", response_model=BackupRestoreOut)
async def get_backup_restore(uuid: UUID, session: SessionDep, caller: CallerDep) -> BackupRestoreOut:
    restore = await backups.get_restore(session, caller, uuid)
    return restore_out(restore, (await backups.restore_parts(session, [restore.id]))[restore.id])


# --- downloads -------------------------------------------------------------------------------


@router.post("/backup-downloads/", response_model=BackupDownloadOut, status_code=201, description=(
        "A link to download the backup without credentials, valid for an hour. 409 unless the backup COMPLETED "
        "and the parts asked for succeeded."))
async def create_backup_download(request: Request, body: BackupDownloadIn, session: SessionDep, caller: CallerDep,
                                 audit: AuditDep) -> BackupDownloadOut:
    download, backup, env, app = await backup_downloads.create(
        session, caller, request.app.state.vault, body.backup, body.service_instance_backups, body.trigger)
    backup_downloads.record_created(audit, download, backup, env, app)
    return download_out(request, download)


@router.get("/backup-downloads/{uuid}/", response_model=BackupDownloadOut, description=(
        "Shows the link again to those who may operate the environment."))
async def get_backup_download(request: Request, uuid: UUID, session: SessionDep,
                              caller: CallerDep) -> BackupDownloadOut:
    return download_out(request, await backup_downloads.get(session, caller, uuid))


@router.get("/backup-download-service-instances/", response_model=Page[BackupDownloadServiceInstanceOut],
            description="The parts of a download link (`backup`: the backup download's uuid), each with its URL.")
async def list_backup_download_service_instances(request: Request, session: SessionDep, caller: CallerDep,
                                                 params: Annotated[PageParams, Depends()],
                                                 backup: UUID) -> dict:
    download = await backup_downloads.get(session, caller, backup)

    async def serialize(rows):
        return download_parts_out(request, download, list(rows))

    return await paginate(session, backup_downloads.parts_query(download), request, params, serialize)


@router.get("/backup-download-service-instances/{uuid}/", response_model=BackupDownloadServiceInstanceOut)
async def get_backup_download_service_instance(request: Request, uuid: UUID, session: SessionDep,
                                               caller: CallerDep) -> BackupDownloadServiceInstanceOut:
    download, found = await backup_downloads.part(session, caller, uuid)
    return download_parts_out(request, download, [found])[0]
