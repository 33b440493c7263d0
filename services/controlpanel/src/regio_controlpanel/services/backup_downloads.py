"""Download links for backups: a URL anyone holding it can fetch without credentials, until
it expires (an hour). Its token is 32 random bytes, found by its SHA-256 (as API tokens
are); it is also kept encrypted so the API can show the URL again to those who may
operate the environment.

What a link gives, streamed from the region's object storage through the control panel
(which reaches the storage where the downloader may not):

- one service-instance backup: a database's pg_dump file (custom format, for
  ``pg_restore``), or a storage's objects as a tar at their keys;
- several: one tar holding ``database-<PREFIX>.dump`` and ``storage-<PREFIX>/<key>`` for
  each, and every one of them also at a URL of its own (``…/<service instance backup>``)."""
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import httpx
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import utcnow

from ..db.models import (
    Application,
    Backup,
    BackupDownload,
    BackupDownloadPart,
    Environment,
    Service,
    ServiceInstanceBackup,
)
from ..domain.backups import DOWNLOAD_SECONDS, TRIGGER, backup_location
from ..domain.errors import ApiError, NotFound
from ..domain.service_instances import ServiceType
from ..region_services import backup_files
from ..region_services.backup_files import Member
from ..region_services.storage import StorageError
from . import backups, provisioning
from .access import Action, Caller
from .crypto import Vault

TOKEN_BYTES = 32


class StorageUnavailable(ApiError):
    status_code = 503

    def body(self) -> dict:
        return {"detail": self.message}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def urls(public_url: str, vault: Vault, download: BackupDownload) -> tuple[str, dict[str, str]]:
    """The link to all it holds, and one for each service-instance backup."""
    base = f"{public_url.rstrip('/')}/downloads/{vault.decrypt(download.token_encrypted)}"
    return base, {part: f"{base}/{part}" for part in download.service_instance_backup_ids}


async def create(session: AsyncSession, caller: Caller, vault: Vault, backup_id: UUID, wanted: list[UUID] | None,
                 trigger: str) -> tuple[BackupDownload, Backup, Environment, Application]:
    """Data leaves the environment: the caller must be allowed to operate it."""
    backup, env, app = await backups.get_backup(session, caller, backup_id, Action.OPERATE, field="backup")
    if not TRIGGER.match(trigger):
        raise ApiError("Uppercase letters and underscores, e.g. MANUAL.", "trigger")
    parts = (await backups.parts_of(session, [backup.id]))[backup.id]
    chosen = backups.chosen_parts(parts, wanted)
    backups.check_parts_usable(backup, parts, chosen)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    download = BackupDownload(backup_id=backup.id, service_instance_backup_ids=[str(p.id) for p in chosen],
                              trigger=trigger, token_hash=_hash(token), token_encrypted=vault.encrypt(token),
                              created_at=now, expires_at=now + timedelta(seconds=DOWNLOAD_SECONDS))
    session.add(download)
    await session.flush()
    session.add_all(BackupDownloadPart(download_id=download.id, service_instance_backup_id=p.id) for p in chosen)
    await session.flush()
    return download, backup, env, app


def record_created(audit, download: BackupDownload, backup: Backup, env: Environment, app: Application) -> None:
    """The audit record of a new download link, alike from the API and the web."""
    audit.record(app.organisation_id, "backup_download.create", "backup_download", download.id,
                 f"Download link for backup {backup.id} of {app.slug} {env.slug}, until {download.expires_at:%c} UTC",
                 {"backup": backup.id, "service_instance_backups": download.service_instance_backup_ids,
                  "trigger": download.trigger, "expires_at": download.expires_at.isoformat()})


async def get(session: AsyncSession, caller: Caller, download_id: UUID) -> BackupDownload:
    download = await session.get(BackupDownload, download_id)
    if download is None:
        raise NotFound()
    await backups.get_backup(session, caller, download.backup_id, Action.OPERATE)
    return download


def parts_query(download: BackupDownload) -> Select:
    """A link's parts, in a stable order for paging."""
    return select(BackupDownloadPart).where(BackupDownloadPart.download_id == download.id).order_by(BackupDownloadPart.id)


async def part(session: AsyncSession, caller: Caller, part_id: UUID) -> tuple[BackupDownload, BackupDownloadPart]:
    found = await session.get(BackupDownloadPart, part_id)
    if found is None:
        raise NotFound()
    return await get(session, caller, found.download_id), found


# --- serving a link --------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    """What a link answers: a name, a type, a length, and the bytes as they are read."""

    filename: str
    media_type: str
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]


async def open_link(session: AsyncSession, vault: Vault, token: str, part_id: UUID | None = None) -> File:
    """The file behind a link; not found when the token is unknown, expired, or names no such
    part. The storage is asked what it holds now, so a missing object fails here, before
    the answer starts."""
    download = (await session.execute(
        select(BackupDownload).where(BackupDownload.token_hash == _hash(token)))).scalar_one_or_none()
    if download is None or download.expires_at <= utcnow():
        raise NotFound()
    ids = [UUID(i) for i in download.service_instance_backup_ids]
    if part_id is not None:
        if part_id not in ids:
            raise NotFound()
        ids = [part_id]
    backup, env, app = (await session.execute(
        select(Backup, Environment, Application).join(Environment, Environment.id == Backup.environment_id)
        .join(Application, Application.id == Environment.application_id)
        .where(Backup.id == download.backup_id))).one()
    parts = {p.id: p for p in (await session.execute(
        select(ServiceInstanceBackup).where(ServiceInstanceBackup.id.in_(ids)))).scalars()}
    chosen = [parts[i] for i in ids if i in parts]
    if not chosen:
        raise NotFound()
    name = f"{app.slug}-{env.slug}-{backup.created_at:%Y%m%d-%H%M%S}"
    try:
        holders = {i: provisioning.server_of(await session.get(Service, i), vault)
                   for i in {p.storage_service_id for p in chosen}}
        members = {part.id: await _members(holders[part.storage_service_id], backup, part) for part in chosen}
    except (provisioning.ProvisioningFailed, StorageError, httpx.HTTPError) as e:
        raise StorageUnavailable("The backup's object storage did not answer; try again later.") from e
    if len(chosen) == 1 and chosen[0].type == ServiceType.DATABASE:
        (dump,) = members[chosen[0].id]
        return File(f"{name}-{chosen[0].prefix.lower()}-database.dump", "application/octet-stream", dump.size,
                    dump.read)
    if len(chosen) == 1:
        files = members[chosen[0].id]
        filename = f"{name}-{chosen[0].prefix.lower()}-storage.tar"
    else:
        files = []
        for part in chosen:
            folder = f"{part.type.lower()}-{part.prefix}"
            files += [Member(f"{folder}.dump" if part.type == ServiceType.DATABASE
                             else backup_files.member_name(folder, m.name), m.size, m.mtime, m.read)
                      for m in members[part.id]]
        filename = f"{name}.tar"
    return File(filename, "application/x-tar", backup_files.tar_size(files),
                lambda: backup_files.tar_stream(files))


async def _members(holder: provisioning.StorageServer, backup: Backup, part: ServiceInstanceBackup) -> list[Member]:
    """The part's files as they are stored: one dump, or the copied objects at their keys."""
    location = backup_location(backup.id, part.id, part.type)
    bucket = holder.backup_bucket
    async with holder.client() as storage:
        stored = await storage.list_objects(bucket, location)

    def reader(key: str) -> Callable[[], AsyncIterator[bytes]]:
        async def read() -> AsyncIterator[bytes]:
            async with holder.client() as storage:
                async for chunk in backup_files.read_object(storage, bucket, key):
                    yield chunk
        return read

    if part.type == ServiceType.DATABASE:
        dump = next((o for o in stored if o.key == location), None)
        if dump is None:
            raise NotFound("The backup's dump is no longer in the object storage.")
        return [Member("dump", dump.size, dump.last_modified.timestamp(), reader(dump.key))]
    return [Member(backup_files.member_name(o.key[len(location):]), o.size, o.last_modified.timestamp(), reader(o.key))
            for o in stored]

