"""The region's service catalogue and the service instances (databases, storage) that
environments add from it.

An instance is recorded NEW; the next deployment's provisioning step creates its database
or bucket and attaches it (its DSN goes into the releases). Detaching keeps the data and
stops telling releases about it; removing a detached instance deletes the data."""
import json
import logging
from uuid import UUID

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import ServiceDataDeletionRequested
from regio_common.outbox import Outbox

from ..db.models import Application, Environment, MigrationServiceCopy, Region, Service, ServiceInstance
from ..domain.errors import ApiError, Conflict, NotFound
from ..domain.service_instances import PREFIX, RemovalRefused, ServiceType, State, check_removable
from . import migrations, plan_limits, provisioning, quotas, regions
from .access import Action, Caller
from .crypto import Vault

log = logging.getLogger(__name__)

# --- the catalogue ---------------------------------------------------------------------


def _visible_services(caller: Caller) -> ColumnElement[bool]:
    """Over Service joined with Region: the public services of regions the caller may use,
    and the dedicated services of the caller's organisations."""
    orgs = caller.organisations
    return and_(regions.visible_to(orgs), or_(Service.organisation_id.is_(None), Service.organisation_id.in_(orgs)))


def services_query(caller: Caller, region_id: UUID | None = None, application_id: UUID | None = None) -> Select:
    query = select(Service).join(Region, Region.id == Service.region_id).where(_visible_services(caller))
    if region_id is not None:
        query = query.where(Service.region_id == region_id)
    if application_id is not None:
        # What the application may use: its region's services, public or its organisation's own.
        query = (query.join(Application, Application.id == application_id)
                 .where(caller.visible_applications(), Service.region_id == Application.region_id,
                        or_(Service.organisation_id.is_(None), Service.organisation_id == Application.organisation_id)))
    # Regions in the order /regions/ lists them: the default one first.
    return query.order_by(Region.is_default.desc(), Region.name, Region.id, Service.type, Service.name, Service.id)


async def get_service(session: AsyncSession, caller: Caller, service_id: UUID, field: str | None = None) -> Service:
    service = (await session.execute(
        select(Service).join(Region, Region.id == Service.region_id)
        .where(Service.id == service_id, _visible_services(caller)))).scalar_one_or_none()
    if service is None:
        raise ApiError("Service not found.", field) if field else NotFound()
    return service


# --- instances -------------------------------------------------------------------------


def instances_query(caller: Caller, environment_id: UUID | None = None, application_id: UUID | None = None) -> Select:
    query = (select(ServiceInstance).join(Environment, Environment.id == ServiceInstance.environment_id)
             .join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if environment_id is not None:
        query = query.where(ServiceInstance.environment_id == environment_id)
    if application_id is not None:
        query = query.where(Environment.application_id == application_id)
    return query.order_by(ServiceInstance.created_at, ServiceInstance.id)


async def services_by_id(session: AsyncSession, ids: set[UUID]) -> dict[UUID, Service]:
    rows = (await session.execute(select(Service).where(Service.id.in_(ids)))).scalars()
    return {s.id: s for s in rows}


async def get_instance(session: AsyncSession, caller: Caller, instance_id: UUID,
                       action: Action) -> tuple[ServiceInstance, Service, Environment, Application]:
    row = (await session.execute(
        select(ServiceInstance, Service, Environment, Application)
        .join(Service, Service.id == ServiceInstance.service_id)
        .join(Environment, Environment.id == ServiceInstance.environment_id)
        .join(Application, Application.id == Environment.application_id)
        .where(ServiceInstance.id == instance_id))).first()
    if row is None:
        raise NotFound()
    instance, service, env, app = row
    caller.require_environment(env, app, action)
    return instance, service, env, app


async def add_instance(session: AsyncSession, caller: Caller, env: Environment, app: Application, *,
                       service_id: UUID, region_id: UUID | None, prefix: str) -> tuple[ServiceInstance, Service]:
    """Records the instance as NEW. The caller has checked they may operate the environment."""
    await migrations.refuse_while_running(session, app.id, "add services")
    if region_id is not None and region_id != app.region_id:
        raise ApiError("The application runs in another region; its service instances are created there.", "region")
    service = await get_service(session, caller, service_id, field="service")
    if service.region_id != app.region_id or service.organisation_id not in (None, app.organisation_id):
        raise ApiError("This service is not offered in the application's region.", "service")
    plan_limits.check_service(await plan_limits.plan_of(session, app), service)
    await quotas.check_service_storage(session, app.organisation_id)
    if service.organisation_id is None and service.type == ServiceType.DATABASE:
        # An organisation with a dedicated database server in the region has its databases there.
        service = await _dedicated(session, service, app.organisation_id) or service
    if not PREFIX.match(prefix):
        raise ApiError("Use uppercase letters, digits and underscores, starting with a letter (at most 63).", "prefix")
    taken = (await session.execute(select(ServiceInstance.id).where(
        ServiceInstance.environment_id == env.id, ServiceInstance.type == service.type,
        ServiceInstance.prefix == prefix))).first()
    if taken:
        raise Conflict(f"This environment already has a {service.type.lower()} service with the prefix {prefix}.",
                       "prefix")
    instance = ServiceInstance(environment_id=env.id, service_id=service.id, type=service.type, prefix=prefix,
                               state=State.NEW)
    session.add(instance)
    try:
        await session.flush()
    except IntegrityError as e:  # a concurrent add with the same prefix
        raise Conflict(f"This environment already has a {service.type.lower()} service with the prefix {prefix}.",
                       "prefix") from e
    return instance, service


async def _dedicated(session: AsyncSession, public: Service, organisation_id: UUID) -> Service | None:
    return (await session.execute(select(Service).where(
        Service.region_id == public.region_id, Service.type == public.type,
        Service.organisation_id == organisation_id).order_by(Service.created_at))).scalars().first()


async def remove_instance(session: AsyncSession, vault: Vault, instance: ServiceInstance, service: Service) -> None:
    """A NEW instance just goes; a detached one's database or bucket is deleted first."""
    env = await session.get(Environment, instance.environment_id)
    await migrations.refuse_while_running(session, env.application_id, "remove services")
    try:
        check_removable(instance.state)
    except RemovalRefused as e:
        raise Conflict(str(e)) from e
    if instance.state == State.DETACHED and instance.credentials_encrypted:
        credentials = json.loads(vault.decrypt(instance.credentials_encrypted))
        try:
            await provisioning.deprovision(service, provisioning.server_of(service, vault), credentials)
        except provisioning.ProvisioningFailed as e:
            raise Conflict(f"{e}; the instance is kept, try again later.") from e
    await session.delete(instance)
    await session.flush()


# The audit trail's words for each change, alike whether the API or the web made it.
_CHANGES = {
    "create": "Added {service} as {prefix} to {application} {environment}",
    "detach": "Detached {service} ({prefix}) from {application} {environment}",
    "attach": "Attached {service} ({prefix}) to {application} {environment}",
    "delete": "Removed {service} ({prefix}) from {application} {environment}",
}


def record_change(audit, change: str, instance: ServiceInstance, service: Service, environment: Environment,
                  application: Application) -> None:
    """Write a change of ``instance`` (one of _CHANGES) to the organisation's audit trail."""
    audit.record(application.organisation_id, f"service_instance.{change}", "service_instance", instance.id,
                 _CHANGES[change].format(service=service.name, prefix=instance.prefix, application=application.slug,
                                         environment=environment.slug),
                 {"environment": environment.id, "service": service.id, "prefix": instance.prefix})


async def change_attachment(session: AsyncSession, caller: Caller, audit, instance_id: UUID, change: str
                            ) -> tuple[ServiceInstance, Service, Environment, Application]:
    """Detach or attach an instance (``change``) and record it: what the API and the web do alike."""
    instance, service, env, app = await get_instance(session, caller, instance_id, Action.OPERATE)
    await migrations.refuse_while_running(session, app.id, f"{change} services")
    {"detach": detach, "attach": attach}[change](instance)
    record_change(audit, change, instance, service, env, app)
    return instance, service, env, app


def detach(instance: ServiceInstance) -> None:
    if instance.state != State.ATTACHED:
        raise Conflict(f"Only an attached service instance can be detached; this one is {instance.state}.")
    instance.state = State.DETACHED


def attach(instance: ServiceInstance) -> None:
    if instance.state != State.DETACHED:
        raise Conflict(f"Only a detached service instance can be attached again; this one is {instance.state}.")
    instance.state = State.ATTACHED


async def in_use(session: AsyncSession, environment_id: UUID) -> list[ServiceInstance]:
    """The instances a deployment of the environment provisions and tells its release about."""
    return list((await session.execute(
        select(ServiceInstance).where(ServiceInstance.environment_id == environment_id,
                                      ServiceInstance.state.not_in([State.DETACHED, State.REMOVED]))
        .order_by(ServiceInstance.created_at, ServiceInstance.id).with_for_update())).scalars())


async def attached_variables(session: AsyncSession, vault: Vault, environment_id: UUID) -> dict[str, str]:
    found: dict[str, str] = {}
    for instance in await in_use(session, environment_id):
        if instance.state == State.ATTACHED and instance.credentials_encrypted:
            found |= provisioning.variables(instance, json.loads(vault.decrypt(instance.credentials_encrypted)))
    return found


async def delete_data_of(session: AsyncSession, outbox: Outbox, environment_ids: list[UUID], region: str) -> None:
    """The environments are being deleted: their instances' databases and buckets go too, once
    this transaction commits (a command, retried while a server does not answer)."""
    instances = (await session.execute(select(ServiceInstance).where(
        ServiceInstance.environment_id.in_(environment_ids), ServiceInstance.credentials_encrypted.is_not(None)))
    ).scalars()
    for instance in instances:
        await outbox.add(session, ServiceDataDeletionRequested(service_id=instance.service_id,
                                                               credentials=instance.credentials_encrypted),
                         region=region)
    # A migration's source copies kept for its grace period go too: the migration's record,
    # deleted with the environment, is the only one of their credentials.
    kept = (await session.execute(
        select(MigrationServiceCopy, Region.slug)
        .join(ServiceInstance, ServiceInstance.id == MigrationServiceCopy.service_instance_id)
        .join(Service, Service.id == MigrationServiceCopy.source_service_id)
        .join(Region, Region.id == Service.region_id)
        .where(ServiceInstance.environment_id.in_(environment_ids),
               MigrationServiceCopy.source_credentials_encrypted.is_not(None)))).all()
    for copy, source_region in kept:
        await outbox.add(session, ServiceDataDeletionRequested(service_id=copy.source_service_id,
                                                               credentials=copy.source_credentials_encrypted),
                         region=source_region)


async def on_data_deletion_requested(session: AsyncSession, vault: Vault,
                                     message: ServiceDataDeletionRequested) -> None:
    service = await session.get(Service, message.service_id)
    if service is None:
        log.warning("service %s is gone: the data of a deleted environment on it is left", message.service_id)
        return
    credentials = json.loads(vault.decrypt(message.credentials))
    # Raises while the server does not answer: the consumer tries again, then gives up and logs.
    await provisioning.deprovision(service, provisioning.server_of(service, vault), credentials)
