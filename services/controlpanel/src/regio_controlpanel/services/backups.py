"""Backups of an environment's service instances and their restores, Divio style.

A backup is requested through the API (PENDING) and made by the control panel's own
consumer of BackupRequested, like provisioning: a database is dumped with pg_dump into a
file that goes to the backup bucket of the region's object storage; a bucket's objects
are copied there by the storage itself. A restore (BackupRestoreRequested) puts them back
into the instances of the same type and prefix of an environment, the backed-up one or
another: a database is replaced by a fresh one loaded from the dump, a bucket ends up
holding exactly the backed-up objects.

What fails is recorded on the backup or restore with a reason a person can read (never a
credential); the consumer's message still succeeds, so nothing is retried behind the
user's back: they ask again."""
import json
import logging
import tempfile
from datetime import datetime
from pathlib import Path
from uuid import UUID

from sqlalchemy import Select, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import BackupFilesDeletionRequested, BackupRequested, BackupRestoreRequested, utcnow
from regio_common.outbox import Outbox

from ..db.models import (
    Application,
    Backup,
    BackupRestore,
    BackupRestoreItem,
    Environment,
    Region,
    Service,
    ServiceInstance,
    ServiceInstanceBackup,
)
from ..domain.backups import (
    TRIGGER,
    NotRestorable,
    Outcome,
    Progress,
    backup_folder,
    backup_location,
    check_usable,
    is_provisioned,
    overall,
)
from ..domain.errors import ApiError, Conflict, NotFound
from ..domain.service_instances import ServiceType
from ..region_services import backup_files, database
from . import lookups, migrations, provisioning
from .access import Action, Caller
from .crypto import Vault

log = logging.getLogger(__name__)

# --- reading ---------------------------------------------------------------------------


def backups_query(caller: Caller, environment_id: UUID | None = None) -> Select:
    """The backups the caller may see, newest first."""
    query = (select(Backup).join(Environment, Environment.id == Backup.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if environment_id is not None:
        query = query.where(Backup.environment_id == environment_id)
    return query.order_by(Backup.created_at.desc(), Backup.id.desc())


async def get_backup(session: AsyncSession, caller: Caller, backup_id: UUID, action: Action,
                     field: str | None = None) -> tuple[Backup, Environment, Application]:
    row = (await session.execute(
        select(Backup, Environment, Application).join(Environment, Environment.id == Backup.environment_id)
        .join(Application, Application.id == Environment.application_id).where(Backup.id == backup_id))).first()
    if row is None:
        raise ApiError("Backup not found.", field) if field else NotFound()
    backup, env, app = row
    try:
        caller.require_environment(env, app, action, field)
    except ApiError as e:
        if e.status_code == 400:  # the environment is not the caller's: neither is its backup
            raise ApiError("Backup not found.", field) from e
        raise
    return backup, env, app


async def parts_of(session: AsyncSession, backup_ids: list[UUID]) -> dict[UUID, list[ServiceInstanceBackup]]:
    """Each backup's service-instance backups: databases first, then by prefix."""
    found: dict[UUID, list[ServiceInstanceBackup]] = {i: [] for i in backup_ids}
    rows = (await session.execute(
        select(ServiceInstanceBackup).where(ServiceInstanceBackup.backup_id.in_(backup_ids))
        .order_by(ServiceInstanceBackup.type, ServiceInstanceBackup.prefix, ServiceInstanceBackup.id))).scalars()
    for part in rows:
        found[part.backup_id].append(part)
    return found


async def get_part(session: AsyncSession, caller: Caller, part_id: UUID) -> ServiceInstanceBackup:
    part = await session.get(ServiceInstanceBackup, part_id)
    if part is None:
        raise NotFound()
    await get_backup(session, caller, part.backup_id, Action.VIEW)
    return part


def chosen_parts(parts: list[ServiceInstanceBackup], wanted: list[UUID] | None) -> list[ServiceInstanceBackup]:
    """The service-instance backups a restore or download names (all that succeeded when it
    names none), each one of this backup's."""
    if wanted is None:
        return [p for p in parts if p.success == Outcome.SUCCESS] or parts
    if not wanted:
        raise ApiError("Name at least one service instance backup, or leave the field out for all.",
                       "service_instance_backups")
    by_id = {p.id: p for p in parts}
    unknown = [str(i) for i in wanted if i not in by_id]
    if unknown:
        raise ApiError(f"Not service instance backups of this backup: {', '.join(unknown)}.",
                       "service_instance_backups")
    return [by_id[i] for i in dict.fromkeys(wanted)]


def check_parts_usable(backup: Backup, parts: list[ServiceInstanceBackup], chosen: list[ServiceInstanceBackup]) -> None:
    try:
        check_usable(backup.state, [p.success == Outcome.SUCCESS for p in parts],
                     [p.success == Outcome.SUCCESS for p in chosen])
    except NotRestorable as e:
        raise Conflict(str(e)) from e


async def restore_parts(session: AsyncSession, restore_ids: list[UUID]) -> dict[UUID, list[UUID]]:
    found: dict[UUID, list[UUID]] = {i: [] for i in restore_ids}
    rows = (await session.execute(
        select(BackupRestoreItem.restore_id, BackupRestoreItem.service_instance_backup_id)
        .join(ServiceInstanceBackup, ServiceInstanceBackup.id == BackupRestoreItem.service_instance_backup_id)
        .where(BackupRestoreItem.restore_id.in_(restore_ids))
        .order_by(ServiceInstanceBackup.type, ServiceInstanceBackup.prefix))).all()
    for restore_id, part_id in rows:
        found[restore_id].append(part_id)
    return found


async def get_restore(session: AsyncSession, caller: Caller, restore_id: UUID) -> BackupRestore:
    row = (await session.execute(
        select(BackupRestore, Environment, Application)
        .join(Environment, Environment.id == BackupRestore.environment_id)
        .join(Application, Application.id == Environment.application_id)
        .where(BackupRestore.id == restore_id))).first()
    if row is None:
        raise NotFound()
    restore, env, app = row
    caller.require_environment(env, app, Action.VIEW)
    return restore


# --- requested through the API ------------------------------------------------------------


class Backups:
    def __init__(self, outbox: Outbox, vault: Vault):
        self.outbox = outbox
        self.vault = vault

    async def request_backup(self, session: AsyncSession, caller: Caller, environment_id: UUID,
                             services: list[UUID] | None, trigger: str, notes: str,
                             scheduled_for_deletion_at: datetime | None = None,
                             ) -> tuple[Backup, list[ServiceInstanceBackup], Environment, Application]:
        """``services``: the instances to back up, each of the environment and provisioned;
        None for all its provisioned ones."""
        env, app = await lookups.environment(session, caller, environment_id, Action.OPERATE, field="environment")
        if not TRIGGER.match(trigger):
            raise ApiError("Uppercase letters and underscores, e.g. MANUAL.", "trigger")
        chosen = await self._backed_up_instances(session, env, services)
        backup, parts = await self._record(session, env, app, chosen, trigger, notes, scheduled_for_deletion_at)
        return backup, parts, env, app

    async def back_up_for_the_platform(self, session: AsyncSession, env: Environment, app: Application, trigger: str,
                                       notes: str) -> Backup | None:
        """A backup the platform takes of every provisioned instance of the environment (none:
        nothing to back up), e.g. a migrated environment's data before its old copies go."""
        instances = (await session.execute(select(ServiceInstance).where(
            ServiceInstance.environment_id == env.id).order_by(ServiceInstance.type, ServiceInstance.prefix))).scalars()
        chosen = [i for i in instances if is_provisioned(i.state, bool(i.credentials_encrypted))]
        if not chosen:
            return None
        return (await self._record(session, env, app, chosen, trigger, notes, None))[0]

    async def _record(self, session: AsyncSession, env: Environment, app: Application,
                      chosen: list[ServiceInstance], trigger: str, notes: str,
                      scheduled_for_deletion_at: datetime | None) -> tuple[Backup, list[ServiceInstanceBackup]]:
        holder = await self._region_storage(session, app.region_id)
        backup = Backup(environment_id=env.id, state=Progress.PENDING, trigger=trigger, notes=notes,
                        scheduled_for_deletion_at=scheduled_for_deletion_at)
        session.add(backup)
        await session.flush()
        parts = [ServiceInstanceBackup(
            backup_id=backup.id, service_instance_id=instance.id, type=instance.type, prefix=instance.prefix,
            # A bucket is copied inside its own storage; a dump goes to the region's.
            storage_service_id=instance.service_id if instance.type == ServiceType.STORAGE else holder.id,
            state=Progress.PENDING) for instance in chosen]
        session.add_all(parts)
        await session.flush()
        region = await session.get(Region, app.region_id)
        await self.outbox.add(session, BackupRequested(backup_id=backup.id), region=region.slug)
        return backup, sorted(parts, key=lambda p: (p.type, p.prefix))

    async def _backed_up_instances(self, session: AsyncSession, env: Environment,
                                   services: list[UUID] | None) -> list[ServiceInstance]:
        instances = list((await session.execute(
            select(ServiceInstance).where(ServiceInstance.environment_id == env.id)
            .order_by(ServiceInstance.type, ServiceInstance.prefix))).scalars())
        if services is None:
            chosen = [i for i in instances if is_provisioned(i.state, bool(i.credentials_encrypted))]
            if not chosen:
                raise ApiError("The environment has no provisioned service instance to back up (a deployment "
                               "creates its databases and buckets).", "services")
            return chosen
        if not services:
            raise ApiError("Name at least one service instance, or leave the field out for all.", "services")
        by_id = {i.id: i for i in instances}
        chosen = []
        for instance_id in dict.fromkeys(services):
            instance = by_id.get(instance_id)
            if instance is None:
                raise ApiError(f"{instance_id} is not a service instance of this environment.", "services")
            if not is_provisioned(instance.state, bool(instance.credentials_encrypted)):
                raise ApiError(f"The {instance.type.lower()} service {instance.prefix} is {instance.state}: it holds "
                               "no data until a deployment provisions it.", "services")
            chosen.append(instance)
        return chosen

    @staticmethod
    async def _region_storage(session: AsyncSession, region_id: UUID) -> Service:
        """The region's own object storage (not an organisation's): where dumps are kept."""
        found = (await session.execute(select(Service).where(
            Service.region_id == region_id, Service.type == ServiceType.STORAGE, Service.organisation_id.is_(None))
            .order_by(Service.created_at, Service.id))).scalars().first()
        if found is None:
            raise ApiError("This region offers no object storage to keep backups in.", "services")
        return found

    async def request_restore(self, session: AsyncSession, caller: Caller, backup_id: UUID,
                              wanted: list[UUID] | None, environment_id: UUID | None,
                              ) -> tuple[BackupRestore, list[ServiceInstanceBackup], Environment, Application]:
        """Into ``environment_id`` (the backup's own when None), whose instances of the same type
        and prefix must be provisioned. Taking data out of the backed-up environment and
        replacing the target's both need the right to operate them."""
        backup, source_env, source_app = await get_backup(session, caller, backup_id, Action.OPERATE, field="backup")
        parts = (await parts_of(session, [backup.id]))[backup.id]
        chosen = chosen_parts(parts, wanted)
        check_parts_usable(backup, parts, chosen)
        if environment_id is None or environment_id == source_env.id:
            env, app = source_env, source_app
        else:
            env, app = await lookups.environment(session, caller, environment_id, Action.OPERATE, field="environment")
        if app.region_id != source_app.region_id:
            raise ApiError("The environment is in another region than the backup.", "environment")
        # A restore rewrites the databases being replicated to the target (and their schema).
        await migrations.refuse_while_running(session, app.id, "restore backups into it")
        instances = {(i.type, i.prefix): i for i in (await session.execute(
            select(ServiceInstance).where(ServiceInstance.environment_id == env.id))).scalars()}
        items = []
        for part in chosen:
            target = instances.get((part.type, part.prefix))
            if target is None or not is_provisioned(target.state, bool(target.credentials_encrypted)):
                raise ApiError(f"The environment has no provisioned {part.type.lower()} service {part.prefix} to "
                               "restore into (add it and deploy first).", "environment")
            if part.type == ServiceType.STORAGE and target.service_id != part.storage_service_id:
                raise ApiError(f"The environment's storage service {part.prefix} is on other object storage than "
                               "the backup.", "environment")
            items.append((part, target))
        restore = BackupRestore(backup_id=backup.id, environment_id=env.id, state=Progress.PENDING)
        session.add(restore)
        await session.flush()
        session.add_all([BackupRestoreItem(restore_id=restore.id, service_instance_backup_id=part.id,
                                           service_instance_id=target.id) for part, target in items])
        region = await session.get(Region, app.region_id)
        await self.outbox.add(session, BackupRestoreRequested(restore_id=restore.id), region=region.slug)
        return restore, chosen, env, app

    # --- done by the control panel's consumer ------------------------------------------

    async def on_backup_requested(self, session: AsyncSession, message: BackupRequested) -> None:
        await _mark_working(session, Backup, message.backup_id,
                            update(ServiceInstanceBackup).where(ServiceInstanceBackup.backup_id == message.backup_id,
                                                                ServiceInstanceBackup.state == Progress.PENDING))
        backup = (await session.execute(
            select(Backup).where(Backup.id == message.backup_id).with_for_update())).scalar_one_or_none()
        if backup is None or backup.state == Progress.COMPLETED:
            return
        parts = (await parts_of(session, [backup.id]))[backup.id]
        for part in parts:
            if part.state == Progress.COMPLETED:
                continue
            secrets: list[str] = []
            try:
                part.size = await self._back_up(session, backup, part, secrets)
                part.success = Outcome.SUCCESS
            except Exception as e:  # whatever went wrong, told without credentials
                part.success, part.error = Outcome.FAILURE, _reason(e, secrets)
            part.state, part.ended_at = Progress.COMPLETED, utcnow()
        backup.state, backup.success, backup.ended_at = Progress.COMPLETED, overall([p.success for p in parts]), utcnow()

    async def _back_up(self, session: AsyncSession, backup: Backup, part: ServiceInstanceBackup,
                       secrets: list[str]) -> int:
        """Writes the part's file or objects; the bytes now kept. ``secrets`` gets what an error
        message must not show."""
        instance = await session.get(ServiceInstance, part.service_instance_id) if part.service_instance_id else None
        if instance is None or not is_provisioned(instance.state, bool(instance.credentials_encrypted)):
            raise _Refused(f"The {part.type.lower()} service {part.prefix} was removed before it was backed up.")
        credentials = self._credentials(instance, secrets)
        holder = await self._server(session, part.storage_service_id, secrets)
        location = backup_location(backup.id, part.id, part.type)
        async with holder.client() as storage:
            await storage.ensure_bucket(holder.backup_bucket)
            if part.type == ServiceType.DATABASE:
                server = await self._server(session, instance.service_id, secrets)
                with tempfile.TemporaryDirectory(prefix="regio-backup-") as scratch:
                    path = await database.dump(server.admin_url, credentials["database"], Path(scratch) / "dump")
                    return await storage.put_file(holder.backup_bucket, location, path, "application/octet-stream")
            await storage.delete_prefix(holder.backup_bucket, location)  # an interrupted attempt's copies
            await storage.copy_bucket(credentials["bucket"], holder.backup_bucket, location)
            return sum(o.size for o in await storage.list_objects(holder.backup_bucket, location))

    async def on_restore_requested(self, session: AsyncSession, message: BackupRestoreRequested) -> None:
        await _mark_working(session, BackupRestore, message.restore_id)
        restore = (await session.execute(
            select(BackupRestore).where(BackupRestore.id == message.restore_id).with_for_update())).scalar_one_or_none()
        if restore is None or restore.state == Progress.COMPLETED:
            return
        items = list((await session.execute(
            select(BackupRestoreItem, ServiceInstanceBackup)
            .join(ServiceInstanceBackup, ServiceInstanceBackup.id == BackupRestoreItem.service_instance_backup_id)
            .where(BackupRestoreItem.restore_id == restore.id)
            .order_by(ServiceInstanceBackup.type, ServiceInstanceBackup.prefix))).all())
        for item, part in items:
            secrets: list[str] = []
            try:
                await self._restore(session, restore, item, part, secrets)
                item.success = Outcome.SUCCESS
            except Exception as e:
                item.success = Outcome.FAILURE
                item.error = f"{part.type.lower()} service {part.prefix}: {_reason(e, secrets)}"
        restore.success = overall([item.success for item, _ in items])
        restore.error = "; ".join(item.error for item, _ in items if item.error) or None
        restore.state, restore.ended_at = Progress.COMPLETED, utcnow()

    async def _restore(self, session: AsyncSession, restore: BackupRestore, item: BackupRestoreItem,
                       part: ServiceInstanceBackup, secrets: list[str]) -> None:
        target = await session.get(ServiceInstance, item.service_instance_id) if item.service_instance_id else None
        if target is None or not is_provisioned(target.state, bool(target.credentials_encrypted)):
            raise _Refused("the instance to restore into was removed")
        credentials = self._credentials(target, secrets)
        holder = await self._server(session, part.storage_service_id, secrets)
        location = backup_location(restore.backup_id, part.id, part.type)
        async with holder.client() as storage:
            if part.type == ServiceType.DATABASE:
                server = await self._server(session, target.service_id, secrets)
                with tempfile.TemporaryDirectory(prefix="regio-restore-") as scratch:
                    path = Path(scratch) / "dump"
                    await backup_files.download_to_file(storage, holder.backup_bucket, location, path)
                    await database.restore(server.admin_url, credentials["database"], credentials["role"], path)
                return
            await storage.restore_prefix(holder.backup_bucket, location, credentials["bucket"])

    def _credentials(self, instance: ServiceInstance, secrets: list[str]) -> dict:
        credentials = json.loads(self.vault.decrypt(instance.credentials_encrypted))
        secrets += [credentials.get("password", ""), credentials.get("secret_key", "")]
        return credentials

    async def _server(self, session: AsyncSession, service_id: UUID, secrets: list[str]):
        server = provisioning.server_of(await session.get(Service, service_id), self.vault)
        if isinstance(server, provisioning.StorageServer):
            secrets.append(server.secret_key)
        else:
            secrets += [server.admin_url, make_url(server.admin_url).password or ""]
        return server


def _parts_named(parts) -> str:
    return ", ".join(f"{p.type.lower()} {p.prefix}" for p in parts)


def record_backup(audit, backup: Backup, parts: list[ServiceInstanceBackup], env: Environment,
                  app: Application) -> None:
    """The audit record of a requested backup, alike from the API and the web."""
    audit.record(app.organisation_id, "backup.create", "backup", backup.id,
                 f"Backup of {app.slug} {env.slug} requested: {_parts_named(parts)}",
                 {"environment": env.id, "services": [str(p.service_instance_id) for p in parts],
                  "trigger": backup.trigger})


def record_restore(audit, restore: BackupRestore, parts: list[ServiceInstanceBackup], env: Environment,
                   app: Application) -> None:
    audit.record(app.organisation_id, "backup_restore.create", "backup_restore", restore.id,
                 f"Restore of backup {restore.backup_id} into {app.slug} {env.slug} requested: {_parts_named(parts)}",
                 {"backup": restore.backup_id, "environment": env.id,
                  "service_instance_backups": [str(p.id) for p in parts]})


async def delete_files_of(session: AsyncSession, outbox: Outbox, environment_ids: list[UUID], region: str) -> None:
    """The environments are being deleted, and their backups' rows with them: their files go too,
    once this transaction commits (a command per storage service holding some)."""
    held = (await session.execute(
        select(ServiceInstanceBackup.storage_service_id, Backup.id).join(Backup, Backup.id == ServiceInstanceBackup.backup_id)
        .where(Backup.environment_id.in_(environment_ids)).distinct())).all()
    by_storage: dict[UUID, set[str]] = {}
    for storage_service_id, backup_id in held:
        by_storage.setdefault(storage_service_id, set()).add(backup_folder(backup_id))
    for storage_service_id, prefixes in by_storage.items():
        await outbox.add(session, BackupFilesDeletionRequested(storage_service_id=storage_service_id,
                                                               prefixes=sorted(prefixes)), region=region)


async def on_files_deletion_requested(session: AsyncSession, vault: Vault, message: BackupFilesDeletionRequested) -> None:
    service = await session.get(Service, message.storage_service_id)
    if service is None:
        log.warning("storage service %s is gone: the files of deleted backups on it are left", message.storage_service_id)
        return
    holder = provisioning.server_of(service, vault)
    # Raises while the storage does not answer: the consumer tries again, then gives up and logs.
    async with holder.client() as storage:
        for prefix in message.prefixes:
            await storage.delete_prefix(holder.backup_bucket, prefix)


# --- helpers -------------------------------------------------------------------------------


class _Refused(Exception):
    """A reason already fit to show."""


async def _mark_working(session: AsyncSession, model, row_id: UUID, *also) -> None:
    """PENDING → WORKING, committed at once on a connection of its own, so the API shows the
    work going on while the handler's transaction (which records the outcome) is open."""
    async with session.bind.begin() as connection:
        await connection.execute(update(model).where(model.id == row_id, model.state == Progress.PENDING)
                                 .values(state=Progress.WORKING))
        for statement in also:
            await connection.execute(statement.values(state=Progress.WORKING))


def _reason(error: Exception, secrets: list[str]) -> str:
    """What went wrong, for a person: the servers' own words, less any password or key
    they might echo (longest first, so a URL goes before the password inside it)."""
    text = str(error) or type(error).__name__
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:2000]
