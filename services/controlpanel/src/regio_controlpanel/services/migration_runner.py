"""Carries migrations out, step by step (domain/migrations.py), in the control panel.

Each step is recorded when it starts and can be run again after a crash: what it makes
is named after the migration or the service instance, so a second run finds it. One
control panel process works on a migration at a time (a lease on its row, renewed while
it works). No step holds a database connection while it waits on another server.

The cut-over, per application: every serving environment's requests are held at the
source region's ingress (its controller confirms when none is in flight any more), the
source databases are frozen, the target's copies catch up (sequences too) and buckets get
their last changes; then one transaction makes the target's copies the instances' own,
moves the application to the target region and asks the source to forward the old hosts
there. Before that transaction any failure rolls back (the source serves as before); after
it, the target serves and a failure is reported, not undone."""
import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from sqlalchemy import and_, delete, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import EnvironmentRetired, EnvironmentTrafficSet, ServiceDataDeletionRequested, Traffic
from regio_common.outbox import Outbox

from ..db.models import (
    Application,
    ClaimedHost,
    Deployment,
    Environment,
    Migration,
    MigrationEnvironment,
    MigrationServiceCopy,
    Region,
    Release,
    Service,
    ServiceInstance,
)
from ..domain import deployments as deployment_lifecycle
from ..domain.environments import default_domain
from ..domain.migrations import CANCELLABLE, FINAL, CopyState, Status
from ..domain.service_instances import ServiceType
from ..region_services import bucket_copy, replication
from ..region_services.storage import StorageError
from . import domains, migrations, provisioning, service_instances, subscriptions
from .backups import Backups
from .clock import Clock
from .crypto import Vault
from .deployments import Deployments
from .provisioning import DatabaseServer, StorageServer

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
LEASE = timedelta(seconds=60)
RETRY_AFTER_CRASH = timedelta(seconds=30)
AT_ONCE = 4  # migrations worked on at once by one process
TRAFFIC_SECONDS = 15.0  # for the source's controller to confirm a traffic change
CATCH_UP_SECONDS = 10.0  # for a target database to apply what the source wrote before its freeze
# Held requests wait at the source's ingress for at most its retry window (30 s: the ingress's
# caddy/config.py RETRY_FOR). Past this much of it, the cut-over gives up before its commit,
# leaving the rest for the forward to be applied.
HOLD_BUDGET_SECONDS = 20.0


class MigrationFailed(Exception):
    """The reason, for a person (no secret)."""


class MigrationCancelled(Exception):
    pass


class MigrationRunner:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, vault: Vault,
                 deployments: Deployments, backups: Backups, grace_seconds: float, copy_seconds: float,
                 clock: Clock | None = None):
        self.sessions = sessions
        self.clock = clock or Clock()  # billing's: when the subscription in the target region starts
        self.outbox = outbox
        self.vault = vault
        self.deployments = deployments
        self.backups = backups
        self.grace = timedelta(seconds=grace_seconds)
        self.copy_seconds = copy_seconds
        self._wakeup = asyncio.Event()  # for the loop that picks migrations up
        self._traffic = asyncio.Event()  # for cut-overs waiting on the source's controller
        self._driving: dict[UUID, asyncio.Task] = {}

    def wake(self) -> None:
        """Something changed (a new migration, a traffic change confirmed): look now."""
        self._wakeup.set()
        self._traffic.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    for migration_id in await self._claim_due():
                        self._driving[migration_id] = asyncio.create_task(self._drive(migration_id))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("looking for migrations to work on failed")
                try:
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                self._wakeup.clear()
        finally:
            driving = list(self._driving.values())
            for task in driving:
                task.cancel()
            # Ended before the runtime closes the engine they use.
            await asyncio.gather(*driving, return_exceptions=True)

    async def _claim_due(self) -> list[UUID]:
        if len(self._driving) >= AT_ONCE:
            return []
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            due = select(Migration.id).where(
                # Unfinished, or past its cut-over (a success, or a failure after it) with its
                # grace period over and the source's copies still there.
                or_(Migration.ended_at.is_(None),
                    and_(Migration.cut_over_at.is_not(None), Migration.source_removed_at.is_(None),
                         Migration.grace_until < now)),
                or_(Migration.lease_until.is_(None), Migration.lease_until < now),
                Migration.id.not_in(list(self._driving)) if self._driving else true(),
            ).order_by(Migration.created_at).limit(AT_ONCE - len(self._driving)).with_for_update(skip_locked=True)
            ids = list((await session.execute(due)).scalars())
            if ids:
                await session.execute(update(Migration).where(Migration.id.in_(ids)).values(lease_until=now + LEASE))
        return ids

    async def _drive(self, migration_id: UUID) -> None:
        renewing = asyncio.create_task(self._renew(migration_id))
        retry_at = None
        try:
            await self._advance(migration_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or an outage (the platform's database): the step runs again later.
            log.exception("migration %s: a step crashed; trying again in %s", migration_id, RETRY_AFTER_CRASH)
            retry_at = datetime.now(UTC) + RETRY_AFTER_CRASH
        finally:
            renewing.cancel()
            self._driving.pop(migration_id, None)
            try:
                async with self.sessions() as session, session.begin():
                    await session.execute(update(Migration).where(Migration.id == migration_id)
                                          .values(lease_until=retry_at))
            except Exception:
                log.exception("migration %s: giving its lease back failed (it expires)", migration_id)

    async def _renew(self, migration_id: UUID) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                async with self.sessions() as session, session.begin():
                    await session.execute(update(Migration).where(Migration.id == migration_id)
                                          .values(lease_until=datetime.now(UTC) + LEASE))
            except Exception:  # tried again in a third of the lease: one failed call loses nothing
                log.exception("migration %s: renewing its lease failed", migration_id)

    # --- the steps -------------------------------------------------------------------

    async def _advance(self, migration_id: UUID) -> None:
        while True:
            migration = await self._get(migration_id)
            if migration.status in FINAL:
                if migration.cut_over_at is not None and migration.grace_until <= datetime.now(UTC):
                    await self._remove_source(migration_id)
                return
            try:
                if migration.cancel_requested and migration.status in CANCELLABLE:
                    raise MigrationCancelled(migration.cancel_requested)
                if migration.status == Status.QUEUED:
                    await self._step(migration_id, Status.PROVISIONING, started=True)
                elif migration.status == Status.PROVISIONING:
                    await self._provision(migration_id)
                    await self._step(migration_id, Status.COPYING)
                elif migration.status == Status.COPYING:
                    await self._copy(migration_id)
                    await self._step(migration_id, Status.DEPLOYING)
                elif migration.status == Status.DEPLOYING:
                    await self._deploy(migration_id)
                    await self._step(migration_id, Status.CUTTING_OVER)
                elif migration.status == Status.CUTTING_OVER:
                    if migration.cut_over_at is None:
                        await self._cut_over(migration_id)
                    await self._confirm_forwarding(migration_id)
                    await self._step(migration_id, Status.FINISHING)
                elif migration.status == Status.FINISHING:
                    await self._finish(migration_id)
            except MigrationCancelled as e:
                await self._roll_back(migration_id, f"Cancelled: {e}", Status.CANCELLED)
                return
            except MigrationFailed as e:
                if (await self._get(migration_id)).cut_over_at is not None:
                    await self._fail_after_cut_over(migration_id, str(e))
                else:
                    await self._roll_back(migration_id, str(e), Status.FAILURE)
                return

    async def _provision(self, migration_id: UUID) -> None:
        """The environments' parts and the target's databases and buckets."""
        async with self.sessions() as session, session.begin():
            migration, app, source, target = await self._context(session, migration_id)
            envs = list((await session.execute(select(Environment).where(
                Environment.application_id == app.id).order_by(Environment.created_at))).scalars())
            known = set((await session.execute(select(MigrationEnvironment.environment_id).where(
                MigrationEnvironment.migration_id == migration_id))).scalars())
            for env in envs:
                if env.id in known:
                    continue
                serving = await _serving_release(session, env.id)
                hosts = await domains.hosts_of(session, env, app, source)
                session.add(MigrationEnvironment(
                    migration_id=migration_id, environment_id=env.id, release_id=serving,
                    old_hosts=[*hosts.served, *hosts.redirects], traffic_confirmed=False))
                for instance in await service_instances.in_use(session, env.id):
                    session.add(MigrationServiceCopy(
                        migration_id=migration_id, service_instance_id=instance.id,
                        source_service_id=instance.service_id,
                        target_service_id=await self._target_service_id(session, instance, target),
                        state=CopyState.NEW))
        for copy_id in await self._copies(migration_id, CopyState.NEW):
            await self._check_cancel(migration_id)
            async with self.sessions() as session:
                copy, instance, _, target_service = await self._copy_context(session, copy_id)
                if not instance.credentials_encrypted:  # never provisioned: no data to move
                    credentials, what = None, "holds no data yet: nothing to copy"
                else:
                    try:
                        credentials = await provisioning.provision(
                            target_service, provisioning.server_of(target_service, self.vault), instance)
                    except provisioning.ProvisioningFailed as e:
                        raise MigrationFailed(f"Provisioning in the target failed: {e}") from e
                    what = f"created on {target_service.name} in the target"
            async with self.sessions() as session, session.begin():
                copy = await session.get(MigrationServiceCopy, copy_id, with_for_update=True)
                copy.target_credentials_encrypted = self.vault.encrypt(json.dumps(credentials)) if credentials else None
                copy.state = CopyState.PROVISIONED
                migrations.log(session, migration_id, f"{instance.type.lower()} service {instance.prefix}: {what}")

    async def _copy(self, migration_id: UUID) -> None:
        """Databases replicated (their first copy done), buckets synced twice (the second
        pass leaves the cut-over little to do), while the source serves and writes."""
        for copy_id in await self._copies(migration_id, CopyState.PROVISIONED, CopyState.COPYING):
            await self._check_cancel(migration_id)
            async with self.sessions() as session:
                copy, instance, source_service, target_service = await self._copy_context(session, copy_id)
            if copy.target_credentials_encrypted is None:
                continue
            if instance.type == ServiceType.DATABASE:
                database = self._database_copy(copy, instance, source_service, target_service)
                started = time.monotonic()
                try:
                    await replication.start(database)
                    await self._until_copied(migration_id, database)
                except (replication.CopyFailed, TimeoutError) as e:
                    raise MigrationFailed(f"Copying database {instance.prefix} failed: {e or 'timed out'}") from e
                line = f"database {instance.prefix}: copied, replicating ({time.monotonic() - started:.1f} s)"
            else:
                synced = [await self._sync_bucket(copy, source_service, target_service) for _ in range(2)]
                line = (f"storage {instance.prefix}: {synced[0].copied} objects ({synced[0].bytes} bytes) copied, "
                        f"then {synced[1].copied} changed since")
            async with self.sessions() as session, session.begin():
                (await session.get(MigrationServiceCopy, copy_id, with_for_update=True)).state = CopyState.COPYING
                migrations.log(session, migration_id, line)

    async def _until_copied(self, migration_id: UUID, database: replication.DatabaseCopy) -> None:
        """The first copy of a big database takes long (up to copy_seconds): a cancel is
        honoured meanwhile, not once it is done."""
        copied = asyncio.create_task(replication.wait_copied(database, self.copy_seconds))
        try:
            while not copied.done():
                await asyncio.wait({copied}, timeout=POLL_SECONDS)
                if not copied.done():
                    await self._check_cancel(migration_id)
            await copied
        finally:
            copied.cancel()

    async def _deploy(self, migration_id: UUID) -> None:
        """The commit each environment serves, built by the target's builder and rolled out
        there (sanity tests included) with the target's databases and buckets."""
        async with self.sessions() as session, session.begin():
            migration, app, _, target = await self._context(session, migration_id)
            parts = (await session.execute(select(MigrationEnvironment).where(
                MigrationEnvironment.migration_id == migration_id, MigrationEnvironment.release_id.is_not(None),
                MigrationEnvironment.deployment_id.is_(None)).with_for_update())).scalars().all()
            for part in parts:
                env = await session.get(Environment, part.environment_id)
                release = await session.get(Release, part.release_id)
                if release.commit is None:
                    raise MigrationFailed(f"Environment {env.slug} serves an image adopted without a commit: the "
                                          "target region cannot build it again.")
                deployment = await self.deployments.migrate(session, env, app, target, release, migration_id)
                part.deployment_id = deployment.id
                migrations.log(session, migration_id, f"environment {env.slug}: deployment {deployment.id} builds "
                                                      f"commit {release.commit[:12]} in {target.slug}")
        deadline = time.monotonic() + self.copy_seconds
        while True:
            await self._check_cancel(migration_id)
            async with self.sessions() as session:
                rows = (await session.execute(
                    select(Deployment, Environment.slug).join(
                        MigrationEnvironment, MigrationEnvironment.deployment_id == Deployment.id)
                    .join(Environment, Environment.id == Deployment.environment_id)
                    .where(MigrationEnvironment.migration_id == migration_id))).all()
            for deployment, slug in rows:
                if deployment.status in (deployment_lifecycle.Status.FAILURE, deployment_lifecycle.Status.CANCELLED):
                    raise MigrationFailed(f"The deployment of environment {slug} in the target failed "
                                          f"(deployment {deployment.id}): {deployment.error}")
            if all(d.status == deployment_lifecycle.Status.SUCCESS for d, _ in rows):
                async with self.sessions() as session, session.begin():
                    migrations.log(session, migration_id, f"{len(rows)} environment(s) serving in the target, "
                                                          "sanity tests passed" if rows else
                                                          "no environment serves: nothing to deploy in the target")
                return
            if time.monotonic() > deadline:
                raise MigrationFailed("The deployments in the target did not finish in time.")
            await asyncio.sleep(POLL_SECONDS)

    async def _cut_over(self, migration_id: UUID) -> None:
        started = time.monotonic()
        # A cut-over interrupted by a crash is begun again: its hold and freeze are undone first.
        await self._release_source(migration_id)
        serving = await self._set_traffic(migration_id, Traffic.HOLD, held=True)
        try:
            await self._await_traffic(migration_id, serving)
            held_since = time.monotonic()
            async with self.sessions() as session, session.begin():
                migrations.log(session, migration_id, f"requests held at the source's ingress, none in flight "
                                                      f"({time.monotonic() - started:.2f} s)" if serving else
                                                      "no environment serves: no requests to hold")
            for copy_id in await self._copies(migration_id, CopyState.COPYING):
                _within_hold(held_since)
                async with self.sessions() as session:
                    copy, instance, source_service, target_service = await self._copy_context(session, copy_id)
                if copy.target_credentials_encrypted is None:
                    continue
                if instance.type == ServiceType.DATABASE:
                    database = self._database_copy(copy, instance, source_service, target_service)
                    role = self._credentials(instance.credentials_encrypted)["role"]
                    try:
                        await replication.freeze_source(database, role)
                        await replication.wait_caught_up(database, CATCH_UP_SECONDS)
                        sequences = await replication.copy_sequences(database)
                    except (replication.CopyFailed, TimeoutError) as e:
                        raise MigrationFailed(f"Catching up database {instance.prefix} failed: "
                                              f"{e or 'timed out'}") from e
                    line = f"database {instance.prefix}: caught up, {sequences} sequence(s) copied"
                else:
                    # Frozen as the databases are: what its key wrote after this sync would be lost
                    # (workers, uploads straight to the bucket: not behind the ingress's hold).
                    await self._set_source_bucket_writable(instance, source_service, False)
                    synced = await self._sync_bucket(copy, source_service, target_service)
                    line = f"storage {instance.prefix}: frozen, last {synced.copied} changed object(s) copied"
                async with self.sessions() as session, session.begin():
                    migrations.log(session, migration_id, line)
            _within_hold(held_since)
            await self._commit_cut_over(migration_id, started)
        except Exception:
            # Not committed (a failed commit rolls back): the source serves and takes writes again.
            await self._release_source(migration_id)
            raise

    async def _commit_cut_over(self, migration_id: UUID, started: float) -> None:
        """The point of no return, in one transaction."""
        async with self.sessions() as session, session.begin():
            migration, app, source, target = await self._context(session, migration_id, lock=True)
            for copy in (await session.execute(select(MigrationServiceCopy).where(
                    MigrationServiceCopy.migration_id == migration_id).with_for_update())).scalars():
                instance = await session.get(ServiceInstance, copy.service_instance_id, with_for_update=True)
                copy.source_credentials_encrypted = instance.credentials_encrypted
                instance.service_id = copy.target_service_id
                instance.credentials_encrypted = copy.target_credentials_encrypted
                copy.state = CopyState.SWAPPED
            app.region_id = target.id
            now = datetime.now(UTC)
            migration.cut_over_at, migration.grace_until = now, now + self.grace
            # Billed at the target region's price from the cut-over on.
            await subscriptions.move_region(session, app, target.id, self.clock.now())
            for part in await self._parts(session, migration_id, serving_only=True):
                await self._ask_traffic(session, part, source, Traffic.FORWARD, target, migration.grace_until)
            held = bool(await self._parts(session, migration_id, serving_only=True))
            migrations.log(session, migration_id, (
                f"cut over to {target.slug} after {time.monotonic() - started:.2f} s of held requests; {source.slug} "
                f"forwards the old hosts until {migration.grace_until.isoformat(timespec='seconds')}" if held else
                f"cut over to {target.slug} (nothing served: no request was held)"))

    async def _confirm_forwarding(self, migration_id: UUID) -> None:
        async with self.sessions() as session:
            parts = await self._parts(session, migration_id, serving_only=True)
        try:
            await self._await_traffic(migration_id, [p.id for p in parts])
        except MigrationFailed as e:
            raise MigrationFailed(f"The source region's ingress did not confirm forwarding ({e}); the target "
                                  "serves, and clients whose DNS points to the source may fail meanwhile.") from e
        if not parts:
            return  # nothing served: no request waited
        # Requests waited at the source's ingress from when it began holding them until it began
        # forwarding them (as its controller saw the routes applied); without those times, from
        # when the hold was asked for until now (an upper bound).
        async with self.sessions() as session, session.begin():
            migration = await session.get(Migration, migration_id, with_for_update=True)
            now = datetime.now(UTC)
            serving = await self._parts(session, migration_id, serving_only=True)
            for part in serving:
                held, forwarded = part.held_from, part.forwarded_from
                span = (forwarded - held) if held and forwarded else (now - migration.held_at)
                part.write_pause_ms = max(0, round(span.total_seconds() * 1000))
            migration.write_pause_ms = max(part.write_pause_ms for part in serving)
            migrations.log(session, migration_id, f"the source forwards to the target; writes were paused (requests "
                                                  f"held) for {migration.write_pause_ms} ms")

    async def _finish(self, migration_id: UUID) -> None:
        await self._end_replication(migration_id)
        async with self.sessions() as session, session.begin():
            migration, app, source, target = await self._context(session, migration_id, lock=True)
            # The data as it was at the cut-over, kept in the target's backups: the source's
            # copies, identical, are deleted after the grace period.
            for env in (await session.execute(select(Environment).where(
                    Environment.application_id == app.id).order_by(Environment.created_at))).scalars():
                backup = await self.backups.back_up_for_the_platform(
                    session, env, app, "MIGRATION", f"Taken after migration {migration.id} to {target.slug}: the data "
                                                    f"at the cut-over, before {source.slug}'s copies are deleted.")
                if backup is not None:
                    migrations.log(session, migration_id, f"environment {env.slug}: backup {backup.id} of its data "
                                                          "at the cut-over requested")
            migrations.record_step(migration, Status.SUCCESS)
            migration.ended_at = datetime.now(UTC)
            custom = await domains.verified_of_application(session, app.id)
            point = (f" Point the DNS of {', '.join(custom)} at {target.ingress_address.rsplit(':', 1)[0]}."
                     if custom else "")
            migrations.log(session, migration_id, f"Migration succeeded: {app.slug} runs in {target.slug}.{point} "
                                                  f"{source.slug} keeps the detached databases and buckets until "
                                                  f"{migration.grace_until.isoformat(timespec='seconds')}.")

    async def _remove_source(self, migration_id: UUID) -> None:
        """After the grace period: the source's databases and buckets go (a command each, retried
        while a server does not answer), and the target stops serving the old default domains."""
        await self._end_replication(migration_id)  # again: a cut-over that failed after its commit may not have
        async with self.sessions() as session, session.begin():
            migration, app, source, target = await self._context(session, migration_id, lock=True)
            for copy in (await session.execute(select(MigrationServiceCopy).where(
                    MigrationServiceCopy.migration_id == migration_id,
                    MigrationServiceCopy.source_credentials_encrypted.is_not(None)).with_for_update())).scalars():
                await self.outbox.add(session, ServiceDataDeletionRequested(
                    service_id=copy.source_service_id, credentials=copy.source_credentials_encrypted), region=source.slug)
                copy.source_credentials_encrypted, copy.source_deleted_at = None, datetime.now(UTC)
            migration.source_removed_at = datetime.now(UTC)
            for env in (await session.execute(select(Environment).where(Environment.application_id == app.id))).scalars():
                await domains.announce(session, self.outbox, env, app)
            migrations.log(session, migration_id, f"grace period over: {source.slug}'s detached databases and buckets "
                                                  "deleted, old default domains no longer served")

    async def _end_replication(self, migration_id: UUID) -> None:
        """The copies' subscriptions, slots and replication roles go, after the pause (the frozen
        source sends nothing more). A slot left behind would keep the source's WAL for ever."""
        for copy_id in await self._copies(migration_id, CopyState.SWAPPED):
            async with self.sessions() as session:
                copy, instance, source_service, target_service = await self._copy_context(session, copy_id)
            if instance.type == ServiceType.DATABASE and copy.target_credentials_encrypted is not None:
                try:
                    await replication.stop(self._database_copy(copy, instance, source_service, target_service))
                except replication.CopyFailed as e:
                    raise MigrationFailed(f"Ending the replication of database {instance.prefix} failed: {e}") from e

    # --- undoing -------------------------------------------------------------------

    async def _release_source(self, migration_id: UUID) -> None:
        """Requests flow to the source's instances again and its databases take writes."""
        held = []
        async with self.sessions() as session, session.begin():
            migration, _, source, _ = await self._context(session, migration_id)
            for part in await self._parts(session, migration_id, serving_only=True):
                if part.traffic_mode == Traffic.HOLD:
                    held.append(await self._ask_traffic(session, part, source, Traffic.SERVE))
        for copy_id in await self._copies(migration_id, CopyState.COPYING):
            async with self.sessions() as session:
                copy, instance, source_service, target_service = await self._copy_context(session, copy_id)
            if copy.target_credentials_encrypted is None:
                continue
            if instance.type == ServiceType.DATABASE:
                role = self._credentials(instance.credentials_encrypted)["role"]
                await replication.thaw_source(self._database_copy(copy, instance, source_service, target_service),
                                              role)
            else:
                await self._set_source_bucket_writable(instance, source_service, True)
        if held:
            await self._await_traffic(migration_id, held)

    async def _roll_back(self, migration_id: UUID, reason: str, status: Status) -> None:
        """Before the cut-over: the source as it was, the target's copies and instances gone."""
        problems = []

        async def attempt(what: str, step) -> None:
            try:
                await step
            except Exception as e:  # the others are still undone; what failed is said
                log.exception("migration %s: undoing %s failed", migration_id, what)
                problems.append(f"{what}: {e}")

        await attempt("the hold on requests", self._release_source(migration_id))
        for copy_id in await self._copies(migration_id, CopyState.PROVISIONED, CopyState.COPYING):
            await attempt("a copy in the target", self._drop_copy(copy_id))
        async with self.sessions() as session, session.begin():
            migration, app, _, target = await self._context(session, migration_id, lock=True)
            for part in await self._parts(session, migration_id):
                if part.deployment_id is None:
                    continue
                deployment = await session.get(Deployment, part.deployment_id)
                if deployment.status not in deployment_lifecycle.FINAL:
                    await self.deployments.cancel(session, deployment, "its migration was rolled back")
                # The target's instances and routes go; the environment lives on in the source.
                await self.outbox.add(session, EnvironmentRetired(environment_id=part.environment_id,
                                                                  moved_away=True), region=target.slug)
            envs = list((await session.execute(select(Environment).where(
                Environment.application_id == app.id))).scalars())
            await session.execute(delete(ClaimedHost).where(
                ClaimedHost.host.in_([default_domain(app.slug, e.slug, target.domain) for e in envs]),
                ClaimedHost.environment_id.in_([e.id for e in envs]), ClaimedHost.domain_id.is_(None)))
            migrations.record_step(migration, status)
            migration.error = reason.rstrip(".") + "." + (
                f" Undoing it also failed for: {'; '.join(problems)}." if problems else "")
            migration.ended_at = datetime.now(UTC)
            migrations.log(session, migration_id, f"{reason} Rolled back: the application serves from "
                                                  f"{(await session.get(Region, migration.source_region_id)).slug} "
                                                  "as before." + (f" Not undone: {'; '.join(problems)}." if problems else ""))

    async def _drop_copy(self, copy_id: UUID) -> None:
        async with self.sessions() as session:
            copy, instance, source_service, target_service = await self._copy_context(session, copy_id)
        if copy.target_credentials_encrypted is not None:
            credentials = self._credentials(copy.target_credentials_encrypted)
            if instance.type == ServiceType.DATABASE:
                await replication.stop(self._database_copy(copy, instance, source_service, target_service))
            await provisioning.deprovision(target_service, provisioning.server_of(target_service, self.vault),
                                           credentials)
        async with self.sessions() as session, session.begin():
            copy = await session.get(MigrationServiceCopy, copy_id, with_for_update=True)
            copy.state, copy.target_credentials_encrypted = CopyState.DROPPED, None

    async def _fail_after_cut_over(self, migration_id: UUID, reason: str) -> None:
        try:  # a slot left on the source would keep its WAL for ever; tried again after the grace
            await self._end_replication(migration_id)
        except Exception:
            log.exception("migration %s: ending the replication after a failed cut-over failed", migration_id)
        async with self.sessions() as session, session.begin():
            migration, app, _, target = await self._context(session, migration_id, lock=True)
            migrations.record_step(migration, Status.FAILURE)
            migration.error = f"{reason} The cut-over was made: {app.slug} is served by {target.slug}."
            migration.ended_at = datetime.now(UTC)
            migrations.log(session, migration_id, migration.error)

    # --- traffic at the source's ingress -----------------------------------------------

    async def _set_traffic(self, migration_id: UUID, mode: str, held: bool = False) -> list[UUID]:
        async with self.sessions() as session, session.begin():
            migration, _, source, _ = await self._context(session, migration_id, lock=True)
            if held:
                migration.held_at = datetime.now(UTC)
            return [await self._ask_traffic(session, part, source, mode)
                    for part in await self._parts(session, migration_id, serving_only=True)]

    async def _ask_traffic(self, session: AsyncSession, part: MigrationEnvironment, source: Region, mode: str,
                           target: Region | None = None, until: datetime | None = None) -> UUID:
        part.traffic_change_id, part.traffic_mode = uuid4(), mode
        part.traffic_confirmed, part.traffic_error = False, None
        await self.outbox.add(session, EnvironmentTrafficSet(
            environment_id=part.environment_id, change_id=part.traffic_change_id, mode=mode,
            forward_to=target.ingress_address if target else None,
            hosts=part.old_hosts if mode == Traffic.FORWARD else [], forward_until=until), region=source.slug)
        return part.id

    async def _await_traffic(self, migration_id: UUID, part_ids: list[UUID]) -> None:
        deadline = time.monotonic() + TRAFFIC_SECONDS
        while True:
            async with self.sessions() as session:
                parts = (await session.execute(select(MigrationEnvironment).where(
                    MigrationEnvironment.id.in_(part_ids)))).scalars().all()
            failed = [p.traffic_error for p in parts if p.traffic_confirmed and p.traffic_error]
            if failed:
                raise MigrationFailed(f"The source region could not {parts[0].traffic_mode} the requests: {failed[0]}")
            if all(p.traffic_confirmed for p in parts):
                return
            if time.monotonic() > deadline:
                raise MigrationFailed(f"the source region did not confirm the {parts[0].traffic_mode} of requests "
                                      f"within {TRAFFIC_SECONDS:g} s")
            self._traffic.clear()
            try:
                async with asyncio.timeout(0.05):
                    await self._traffic.wait()
            except TimeoutError:
                pass

    # --- lookups -------------------------------------------------------------------------

    async def _get(self, migration_id: UUID) -> Migration:
        async with self.sessions() as session:
            return await session.get(Migration, migration_id)

    async def _step(self, migration_id: UUID, step: Status, started: bool = False) -> None:
        async with self.sessions() as session, session.begin():
            migration = await session.get(Migration, migration_id, with_for_update=True)
            if migration.cancel_requested and migration.status in CANCELLABLE:
                # Accepted while the last step ran (the API took it): honoured before the next,
                # which may be the cut-over.
                raise MigrationCancelled(migration.cancel_requested)
            migrations.record_step(migration, step)
            if started:
                migration.started_at = datetime.now(UTC)

    async def _check_cancel(self, migration_id: UUID) -> None:
        migration = await self._get(migration_id)
        if migration.cancel_requested:
            raise MigrationCancelled(migration.cancel_requested)

    @staticmethod
    async def _context(session: AsyncSession, migration_id: UUID,
                       lock: bool = False) -> tuple[Migration, Application, Region, Region]:
        migration = await session.get(Migration, migration_id, with_for_update=lock)
        app = await session.get(Application, migration.application_id, with_for_update=lock)
        return (migration, app, await session.get(Region, migration.source_region_id),
                await session.get(Region, migration.target_region_id))

    @staticmethod
    async def _parts(session: AsyncSession, migration_id: UUID,
                     serving_only: bool = False) -> list[MigrationEnvironment]:
        query = select(MigrationEnvironment).where(MigrationEnvironment.migration_id == migration_id)
        if serving_only:  # environments with something serving, deployed in the target
            query = query.where(MigrationEnvironment.deployment_id.is_not(None))
        return list((await session.execute(query.order_by(MigrationEnvironment.id))).scalars())

    async def _copies(self, migration_id: UUID, *states: CopyState) -> list[UUID]:
        async with self.sessions() as session:
            return list((await session.execute(select(MigrationServiceCopy.id).where(
                MigrationServiceCopy.migration_id == migration_id, MigrationServiceCopy.state.in_(states))
                .order_by(MigrationServiceCopy.id))).scalars())

    @staticmethod
    async def _copy_context(session: AsyncSession, copy_id: UUID
                            ) -> tuple[MigrationServiceCopy, ServiceInstance, Service, Service]:
        copy = await session.get(MigrationServiceCopy, copy_id)
        return (copy, await session.get(ServiceInstance, copy.service_instance_id),
                await session.get(Service, copy.source_service_id), await session.get(Service, copy.target_service_id))

    @staticmethod
    async def _target_service_id(session: AsyncSession, instance: ServiceInstance, target: Region) -> UUID:
        service = await migrations.target_service(session, await session.get(Service, instance.service_id), target)
        if service is None:
            raise MigrationFailed(f"The target no longer offers the service of {instance.type.lower()} "
                                  f"{instance.prefix}.")
        return service.id

    def _credentials(self, encrypted: str) -> dict:
        return json.loads(self.vault.decrypt(encrypted))

    def _database_copy(self, copy: MigrationServiceCopy, instance: ServiceInstance, source_service: Service,
                       target_service: Service) -> replication.DatabaseCopy:
        source = provisioning.server_of(source_service, self.vault)
        target = provisioning.server_of(target_service, self.vault)
        assert isinstance(source, DatabaseServer) and isinstance(target, DatabaseServer)
        credentials = self._credentials(copy.target_credentials_encrypted)
        # The target's server reaches the source's where the control panel does (the admin URL's
        # address): both are the platform's servers, on networks the operator joins.
        where = urlsplit(source.admin_url.replace("+asyncpg", ""))
        return replication.DatabaseCopy(
            name=f"mig_{copy.id.hex}", source_admin_url=source.admin_url, target_admin_url=target.admin_url,
            database=credentials["database"], owner=credentials["role"],
            source_address=f"{where.hostname}:{where.port or 5432}")

    async def _set_source_bucket_writable(self, instance: ServiceInstance, source_service: Service,
                                          writable: bool) -> None:
        source = provisioning.server_of(source_service, self.vault)
        assert isinstance(source, StorageServer)
        try:
            async with source.client() as storage:
                await storage.set_bucket_writable(self._credentials(instance.credentials_encrypted)["bucket"],
                                                  writable)
        except StorageError as e:
            raise MigrationFailed(f"{'Thawing' if writable else 'Freezing'} storage {instance.prefix} in the source "
                                  f"failed: {e.code}") from e

    async def _sync_bucket(self, copy: MigrationServiceCopy, source_service: Service,
                           target_service: Service) -> bucket_copy.BucketSync:
        source = provisioning.server_of(source_service, self.vault)
        target = provisioning.server_of(target_service, self.vault)
        assert isinstance(source, StorageServer) and isinstance(target, StorageServer)
        async with self.sessions() as session:
            instance = await session.get(ServiceInstance, copy.service_instance_id)
        source_bucket = (self._credentials(copy.source_credentials_encrypted or instance.credentials_encrypted)
                         ["bucket"])
        try:
            return await bucket_copy.sync_bucket(source, source_bucket, target,
                                                 self._credentials(copy.target_credentials_encrypted)["bucket"])
        except bucket_copy.BucketSyncFailed as e:
            raise MigrationFailed(f"Copying storage {instance.prefix} failed: {e}") from e


def _within_hold(held_since: float) -> None:
    if time.monotonic() - held_since > HOLD_BUDGET_SECONDS:
        raise MigrationFailed(f"The cut-over would hold requests longer than the source's ingress keeps them waiting "
                              f"(more than {HOLD_BUDGET_SECONDS:g} s of its 30 s): given up before its commit.")


async def _serving_release(session: AsyncSession, environment_id: UUID) -> UUID | None:
    """The release of the environment's last successful deployment: what serves now."""
    return (await session.execute(select(Deployment.release_id).where(
        Deployment.environment_id == environment_id, Deployment.success.is_(True),
        Deployment.release_id.is_not(None)).order_by(Deployment.ended_at.desc()).limit(1))).scalar_one_or_none()

