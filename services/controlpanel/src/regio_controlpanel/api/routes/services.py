from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request

from ...db.models import Service, ServiceInstance
from ...domain.service_instances import State
from ...services import lookups, service_instances
from ...services.access import Action
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..service_schemas import ServiceInstanceIn, ServiceInstanceOut, ServiceOut

router = Router(prefix="/apps/v3", tags=["services"])

NOT_PROVISIONED = ("An instance is NEW until the environment's next deployment creates its database or bucket "
                   "(PROVISIONING) and attaches it (ATTACHED): its DSN goes into the releases. A DETACHED one "
                   "keeps its data and is no longer told to releases.")


def service_out(s: Service) -> ServiceOut:
    return ServiceOut(uuid=s.id, name=s.name, type=s.type, description=s.description, identifier=s.identifier,
                      version=s.version, region=s.region_id)


def instance_out(i: ServiceInstance, s: Service, status: str | None = None) -> ServiceInstanceOut:
    return ServiceInstanceOut(uuid=i.id, prefix=i.prefix, type=s.type, service_status=status or i.state,
                              region=s.region_id, service=s.id, environment=i.environment_id, created_at=i.created_at)


WEBSITE = Query(description="An application (Divio's old name for it): only the services it may use.")


@router.get("/services/", response_model=Page[ServiceOut])
async def list_services(request: Request, session: SessionDep, caller: CallerDep,
                        params: Annotated[PageParams, Depends()], region: UUID | None = None,
                        website: Annotated[UUID | None, WEBSITE] = None) -> dict:
    """The services of the regions the caller may use, and their organisations' dedicated ones."""
    async def serialize(rows):
        return [service_out(s) for s in rows]

    query = service_instances.services_query(caller, region, website)
    return await paginate(session, query, request, params, serialize)


@router.get("/services/{uuid}/", response_model=ServiceOut)
async def get_service(uuid: UUID, session: SessionDep, caller: CallerDep) -> ServiceOut:
    return service_out(await service_instances.get_service(session, caller, uuid))


@router.get("/service-instances/", response_model=Page[ServiceInstanceOut], description=NOT_PROVISIONED)
async def list_service_instances(request: Request, session: SessionDep, caller: CallerDep,
                                 params: Annotated[PageParams, Depends()], environment: UUID | None = None,
                                 application: UUID | None = None) -> dict:
    async def serialize(rows):
        services = await service_instances.services_by_id(session, {i.service_id for i in rows})
        return [instance_out(i, services[i.service_id]) for i in rows]

    query = service_instances.instances_query(caller, environment, application)
    return await paginate(session, query, request, params, serialize)


@router.post("/service-instances/", response_model=ServiceInstanceOut, status_code=201, description=NOT_PROVISIONED)
async def add_service_instance(body: ServiceInstanceIn, session: SessionDep, caller: CallerDep,
                               audit: AuditDep) -> ServiceInstanceOut:
    env, app = await lookups.environment(session, caller, body.environment, Action.OPERATE, field="environment")
    instance, offered = await service_instances.add_instance(session, caller, env, app, service_id=body.service,
                                                             region_id=body.region, prefix=body.prefix)
    service_instances.record_change(audit, "create", instance, offered, env, app)
    return instance_out(instance, offered)


@router.get("/service-instances/{uuid}/", response_model=ServiceInstanceOut, description=NOT_PROVISIONED)
async def get_service_instance(uuid: UUID, session: SessionDep, caller: CallerDep) -> ServiceInstanceOut:
    instance, offered, _, _ = await service_instances.get_instance(session, caller, uuid, Action.VIEW)
    return instance_out(instance, offered)


@router.post("/service-instances/{uuid}/detach/", response_model=ServiceInstanceOut, description=(
        "Stops telling the environment's next releases about the instance; its data is kept. Only an "
        "ATTACHED instance: 409 otherwise."))
async def detach_service_instance(uuid: UUID, session: SessionDep, caller: CallerDep,
                                  audit: AuditDep) -> ServiceInstanceOut:
    instance, offered, _, _ = await service_instances.change_attachment(session, caller, audit, uuid, "detach")
    return instance_out(instance, offered)


@router.post("/service-instances/{uuid}/attach/", response_model=ServiceInstanceOut, description=(
        "Attaches a DETACHED instance again, with its data: the next deployment's release gets its DSN."))
async def attach_service_instance(uuid: UUID, session: SessionDep, caller: CallerDep,
                                  audit: AuditDep) -> ServiceInstanceOut:
    instance, offered, _, _ = await service_instances.change_attachment(session, caller, audit, uuid, "attach")
    return instance_out(instance, offered)


@router.delete("/service-instances/{uuid}/", response_model=ServiceInstanceOut, description=(
        "Removes a NEW instance, or a DETACHED one with its database or bucket and all their data. "
        "An attached (or provisioning) instance must be detached first: 409."))
async def remove_service_instance(request: Request, uuid: UUID, session: SessionDep, caller: CallerDep,
                                  audit: AuditDep) -> ServiceInstanceOut:
    instance, offered, env, app = await service_instances.get_instance(session, caller, uuid, Action.OPERATE)
    removed = instance_out(instance, offered, status=State.REMOVED)
    await service_instances.remove_instance(session, request.app.state.vault, instance, offered)
    service_instances.record_change(audit, "delete", instance, offered, env, app)
    return removed
