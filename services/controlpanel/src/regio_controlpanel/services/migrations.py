"""Migrations of an application to another region, as asked through the API: what is
refused (and why), the record, cancelling, and what the rest of the control panel asks of
them (is one running; which hosts a migrated environment keeps). The work itself is
services/migration_runner.py's."""
import json
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import and_, event, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentTrafficChanged, Traffic

from ..db.models import (
    Application,
    Deployment,
    Environment,
    Migration,
    MigrationEnvironment,
    MigrationLogChunk,
    MigrationServiceCopy,
    PlanGroup,
    Region,
    Service,
    ServiceInstance,
)
from ..domain.environments import default_domain
from ..domain.errors import ApiError, Conflict, NotFound
from ..domain.migrations import CANCELLABLE, FINAL, Status
from ..domain.service_instances import State as ServiceState
from . import hosts, lookups, provisioning, regions
from .access import Action, Caller
from .crypto import Vault
from .region_health import OFFLINE, RegionHealth

MAX_LOG_LINE = 2000


async def running(session: AsyncSession, application_id: UUID) -> Migration | None:
    """The application's migration that has not ended, if any."""
    return (await session.execute(select(Migration).where(
        Migration.application_id == application_id, Migration.ended_at.is_(None)))).scalars().first()


async def refuse_while_running(session: AsyncSession, application_id: UUID, what: str) -> None:
    """Deployments and changes to services wait for a migration: they would go to a region the
    application is leaving, or change what is being copied."""
    migration = await running(session, application_id)
    if migration is not None:
        raise Conflict(f"The application is being migrated (migration {migration.id}); {what} once it has ended.")


async def in_grace(session: AsyncSession, application_id: UUID) -> Migration | None:
    """The application's migration whose old region still forwards its hosts and keeps its
    detached copies (its grace period), if any."""
    return (await session.execute(select(Migration).where(
        Migration.application_id == application_id, Migration.cut_over_at.is_not(None),
        Migration.source_removed_at.is_(None)).order_by(Migration.cut_over_at.desc()))).scalars().first()


async def refuse_while_hosts_move(session: AsyncSession, application_id: UUID, what: str) -> None:
    """Custom domains stay as they are while a migration runs (it forwards the hosts it found)
    and through its grace period (the old region forwards them: one removed there could be
    claimed by another organisation while still forwarded here)."""
    await refuse_while_running(session, application_id, what)
    migration = await in_grace(session, application_id)
    if migration is not None:
        raise Conflict(f"The application's old region forwards its hosts until "
                       f"{migration.grace_until.isoformat(timespec='seconds')} (migration {migration.id}); "
                       f"{what} after that.")


async def request(session: AsyncSession, caller: Caller, application_id: UUID, target_region_id: UUID,
                  health: RegionHealth) -> Migration:
    """A new migration, or the reason it cannot be made (400 on the field, 409 while something
    else moves the application). ``health``: the regions' heartbeats, for the target's room."""
    app = await lookups.application(session, caller, application_id, Action.MANAGE, field="application")
    # One request at a time per application decides whether another migration runs.
    await session.execute(select(Application.id).where(Application.id == app.id).with_for_update())
    source = await session.get(Region, app.region_id)
    target = await _target(session, app, target_region_id)
    if target.id == source.id:
        raise ApiError(f"The application is already in {target.name} ({target.slug}).", "region")
    if target.ingress_address is None:
        raise ApiError(f"{target.name} ({target.slug}) cannot take migrations: its operator has not said where "
                       "other regions reach its ingress.", "region")
    if source.ingress_address is None:
        raise ApiError(f"The application's region {source.name} ({source.slug}) cannot forward its hosts during "
                       "a migration: its operator has not said where its ingress is reached.", "region")
    await refuse_while_running(session, app.id, "migrate it again")
    previous = await in_grace(session, app.id)
    if previous is not None and previous.source_region_id == target.id:
        # Its detached copies there have the same names as the ones a migration back would make.
        raise Conflict(f"{target.name} ({target.slug}) keeps the application's copies from its migration away "
                       f"until {previous.grace_until.isoformat(timespec='seconds')}; migrate back after that.",
                       "region")
    environments = list((await session.execute(select(Environment).where(
        Environment.application_id == app.id).order_by(Environment.created_at))).scalars())
    await _refuse_while_deploying(session, environments)
    await _check_services_offered(session, environments, target)
    await _check_capacity(session, environments, target, health)
    await _check_default_hosts_free(session, app, environments, target)
    migration = Migration(application_id=app.id, source_region_id=source.id, target_region_id=target.id,
                          status=Status.QUEUED, steps=[], requested_by=caller.user.email)
    record_step(migration, Status.QUEUED)
    session.add(migration)
    await session.flush()
    log(session, migration.id, f"Migration of {app.slug} from {source.name} ({source.slug}) to {target.name} "
                               f"({target.slug}) requested by {caller.user.email}")
    return migration


async def _target(session: AsyncSession, app: Application, region_id: UUID) -> Region:
    """The region asked for, if the application's plan group allows it there. Another
    organisation's dedicated region is answered as one that does not exist."""
    group = await session.get(PlanGroup, app.plan_group_id) if app.plan_group_id else None
    region = await session.get(Region, region_id)
    if region is None or region.retired_at is not None or region.organisation_id not in (None, app.organisation_id):
        raise ApiError(regions.NOT_FOUND, "region")
    await regions.check_plan_allows(session, group, region, app.organisation_id, field="region")
    return region


async def _refuse_while_deploying(session: AsyncSession, environments: list[Environment]) -> None:
    busy = (await session.execute(select(Deployment.id, Environment.slug).join(Environment).where(
        Deployment.environment_id.in_([e.id for e in environments]), Deployment.ended_at.is_(None)))).first()
    if busy is not None:
        raise Conflict(f"Deployment {busy.id} of environment {busy.slug} is running; migrate once it has ended.")


async def _services_used(session: AsyncSession, environments: list[Environment]) -> list[Service]:
    return list((await session.execute(select(Service).join(
        ServiceInstance, ServiceInstance.service_id == Service.id).where(
        ServiceInstance.environment_id.in_([e.id for e in environments]),
        ServiceInstance.state.not_in([ServiceState.DETACHED, ServiceState.REMOVED])))).scalars().unique())


async def _check_services_offered(session: AsyncSession, environments: list[Environment], target: Region) -> None:
    """Every service an environment uses has its like in the target (the same identifier: a
    region's standard ones, or the organisation's own database server there)."""
    for service in await _services_used(session, environments):
        if await target_service(session, service, target) is None:
            raise ApiError(f"{target.name} ({target.slug}) does not offer {service.name} ({service.identifier}), "
                           "which the application uses.", "region")


async def destinations(session: AsyncSession, app: Application) -> list[Region]:
    """The regions ``request`` would accept for the application as it is now (but for a
    deployment or migration running): what the web's form offers."""
    source = await session.get(Region, app.region_id)
    if source.ingress_address is None:
        return []
    group = await session.get(PlanGroup, app.plan_group_id) if app.plan_group_id else None
    environments = list((await session.execute(select(Environment).where(
        Environment.application_id == app.id))).scalars())
    used = await _services_used(session, environments)
    found = []
    for region in await regions.allowed(session, group, app.organisation_id):
        if region.id == source.id or region.ingress_address is None:
            continue
        if all([await target_service(session, service, region) is not None for service in used]):
            found.append(region)
    return found


async def target_service(session: AsyncSession, service: Service, target: Region) -> Service | None:
    return (await session.execute(select(Service).where(
        Service.region_id == target.id, Service.identifier == service.identifier,
        Service.organisation_id.is_not_distinct_from(service.organisation_id)))).scalar_one_or_none()


async def _check_capacity(session: AsyncSession, environments: list[Environment], target: Region,
                          health: RegionHealth) -> None:
    """The target's runners have room for every environment that serves, at its size, as its
    controller last said (its heartbeat): a migration that could not place them would only
    fail at its deployments, after copying everything."""
    serving = set((await session.execute(select(Deployment.environment_id).where(
        Deployment.environment_id.in_([e.id for e in environments]), Deployment.success.is_(True)))).scalars())
    needed = sum(e.instances * e.memory_mb for e in environments if e.id in serving)
    if not needed:
        return
    state = health.state_of(target.slug)
    if state.state == OFFLINE:
        raise ApiError(f"{target.name} ({target.slug}) is offline: its services have not been heard lately.", "region")
    if state.memory_mb_free < needed:
        raise ApiError(f"{target.name} ({target.slug}) has room for {state.memory_mb_free} MB of instances; the "
                       f"application's environments need {needed} MB.", "region")


async def _check_default_hosts_free(session: AsyncSession, app: Application, environments: list[Environment],
                                    target: Region) -> None:
    """The environments' default domains in the target are theirs from now on (claimed here,
    so no one takes them while the migration runs)."""
    for env in environments:
        await hosts.claim(session, env.id, [default_domain(app.slug, env.slug, target.domain)], "region")


async def cancel(session: AsyncSession, migration: Migration, reason: str) -> None:
    """Asks the runner to stop and roll back; refused once the cut-over has begun."""
    migration = (await session.execute(select(Migration).where(Migration.id == migration.id)
                                       .with_for_update())).scalar_one()
    if migration.status in FINAL:
        raise Conflict(f"The migration already ended ({migration.status}).")
    if migration.status not in CANCELLABLE:
        raise Conflict(f"The migration is {migration.status}: past the point where it can be cancelled.")
    migration.cancel_requested = reason[:MAX_LOG_LINE] or "cancelled"
    log(session, migration.id, f"Cancel requested: {migration.cancel_requested}")


async def visible(session: AsyncSession, caller: Caller, migration_id: UUID,
                  action: Action = Action.VIEW) -> tuple[Migration, Application]:
    row = (await session.execute(select(Migration, Application).join(
        Application, Application.id == Migration.application_id).where(Migration.id == migration_id))).first()
    if row is None:
        raise NotFound()
    caller.require_application(row[1], action)
    return row[0], row[1]


async def on_traffic_changed(session: AsyncSession, message: EnvironmentTrafficChanged, region: str) -> None:
    """The source region's controller says a traffic change is in effect. Believed only from
    the migration's source region, about the change the control panel asked for."""
    row = (await session.execute(
        select(MigrationEnvironment).join(Migration, Migration.id == MigrationEnvironment.migration_id)
        .join(Region, Region.id == Migration.source_region_id)
        .where(MigrationEnvironment.traffic_change_id == message.change_id,
               MigrationEnvironment.environment_id == message.environment_id, Region.slug == region)
        .with_for_update(of=MigrationEnvironment))).scalar_one_or_none()
    if row is None:
        return
    row.traffic_confirmed = True
    row.traffic_error = message.error[:MAX_LOG_LINE] if message.error else None
    if message.mode == Traffic.HOLD:
        row.held_from = message.applied_at
    elif message.mode == Traffic.FORWARD:
        row.forwarded_from = message.applied_at


async def old_hosts_served(session: AsyncSession, env: Environment, region: Region) -> list[str]:
    """Hosts ``region`` serves for the environment besides its own default domain: while a
    migration into ``region`` runs or its grace period lasts, the default domain of the
    region the environment left (its old DNS answers arrive forwarded)."""
    now = datetime.now(UTC)
    rows = (await session.execute(
        select(Migration, Region).join(MigrationEnvironment, MigrationEnvironment.migration_id == Migration.id)
        .join(Region, Region.id == Migration.source_region_id)
        .where(MigrationEnvironment.environment_id == env.id, Migration.target_region_id == region.id,
               or_(Migration.status.not_in([Status.FAILURE, Status.CANCELLED]), Migration.cut_over_at.is_not(None)))
    )).all()
    app = await session.get(Application, env.application_id)
    return [default_domain(app.slug, env.slug, source.domain) for migration, source in rows
            if migration.grace_until is None or migration.grace_until > now]


async def copied_variables(session: AsyncSession, vault: Vault, deployment_id: UUID) -> dict[str, str]:
    """What a migration's deployment in the target tells its release of the environment's
    services: the target's copies, under the instances' prefixes."""
    rows = (await session.execute(
        select(ServiceInstance, MigrationServiceCopy)
        .join(MigrationServiceCopy, MigrationServiceCopy.service_instance_id == ServiceInstance.id)
        .join(MigrationEnvironment, and_(MigrationEnvironment.migration_id == MigrationServiceCopy.migration_id,
                                         MigrationEnvironment.environment_id == ServiceInstance.environment_id))
        .where(MigrationEnvironment.deployment_id == deployment_id,
               MigrationServiceCopy.target_credentials_encrypted.is_not(None))
        .order_by(ServiceInstance.created_at, ServiceInstance.id))).all()
    found: dict[str, str] = {}
    for instance, copy in rows:
        found |= provisioning.variables(instance, json.loads(vault.decrypt(copy.target_credentials_encrypted)))
    return found


def wake_after_commit(session: AsyncSession, wake: Callable[[], None]) -> None:
    """The runner looks once the request's transaction is committed: before, it would not see
    the migration (and find it only at its next poll, a second later)."""
    event.listen(session.sync_session, "after_commit", lambda _session: wake(), once=True)


def record_step(migration: Migration, step: Status) -> None:
    if not migration.steps or migration.steps[-1]["step"] != step:
        migration.steps = [*migration.steps, {"step": str(step), "at": datetime.now(UTC).isoformat()}]
    migration.status = step


def log(session: AsyncSession, migration_id: UUID, line: str) -> None:
    session.add(MigrationLogChunk(migration_id=migration_id, text=f"[regio] {line[:MAX_LOG_LINE]}\n"))
