from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.plans import cpu_share

from ...db.models import Application, Deployment, Environment, Region
from ...services import domains, environment_events, lookups, scaling, subscriptions
from ...services import environments as service
from ...services.access import Action
from ..deps import AuditDep, CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import DeploymentRef, EnvironmentEventOut, EnvironmentIn, EnvironmentOut, EnvironmentUpdate
from .applications import site_url

router = Router(prefix="/apps/v3", tags=["environments"])


async def environment_out(session: AsyncSession, request: Request, env: Environment, app: Application) -> EnvironmentOut:
    region = await session.get(Region, app.region_id)
    last = (await session.execute(
        select(Deployment).where(Deployment.environment_id == env.id, Deployment.ended_at.is_not(None))
        .order_by(Deployment.ended_at.desc()).limit(1))).scalar_one_or_none()
    running = (await session.execute(
        select(Deployment).where(Deployment.environment_id == env.id, Deployment.ended_at.is_(None))
        .order_by(Deployment.created_at.desc()).limit(1))).scalar_one_or_none()
    url = site_url(app, env, region)
    plan = await subscriptions.current_plan(session, app)  # shown, not checked: no lock
    out = EnvironmentOut(
        uuid=env.id, application=app.id, slug=env.slug, branch=env.branch, instances=env.instances,
        memory_mb=env.memory_mb, cpus=cpu_share(env.memory_mb), port=env.port,
        health_check_path=env.health_check_path, sanity_timeout_seconds=env.sanity_timeout_seconds,
        https_redirect=env.https_redirect, site_url=url, sleeps_when_idle=plan.sleeps_when_idle,
        sleep_after_seconds=plan.sleep_after_seconds if plan.sleeps_when_idle else None,
        last_finished_deployment=_ref(last), deployment_in_progress=_ref(running), created_at=env.created_at)
    setattr(out, f"{env.slug}_status", {"uuid": str(env.id), "site_url": url})
    return out


def _ref(deployment: Deployment | None) -> DeploymentRef | None:
    if deployment is None:
        return None
    return DeploymentRef(uuid=deployment.id, status=deployment.status, success=deployment.success,
                         ended_at=deployment.ended_at)


@router.get("/environments/", response_model=Page[EnvironmentOut])
async def list_environments(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()],
                            application: UUID | None = None, slug: str | None = None) -> dict:
    query = (select(Environment).join(Application, Application.id == Environment.application_id)
             .where(caller.visible_environments()))
    if application is not None:
        query = query.where(Environment.application_id == application)
    if slug is not None:
        query = query.where(Environment.slug == slug)

    async def serialize(rows):
        return [await environment_out(session, request, e, await session.get(Application, e.application_id)) for e in rows]

    return await paginate(session, query.order_by(Environment.created_at), request, params, serialize)


@router.post("/environments/", response_model=EnvironmentOut, status_code=201)
async def create_environment(body: EnvironmentIn, request: Request, session: SessionDep, caller: CallerDep,
                             audit: AuditDep) -> EnvironmentOut:
    app = await lookups.application(session, caller, body.application, Action.MANAGE, field="application")
    source = await service.copy_source(session, caller, app, body.copy_from)
    env = await service.create_environment(session, request.app.state.vault, app, source, slug=body.slug,
                                           branch=body.branch)
    service.record_created(audit, env, app, source)
    return await environment_out(session, request, env, app)


@router.get("/environments/{uuid}/", response_model=EnvironmentOut)
async def get_environment(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> EnvironmentOut:
    env, app = await lookups.environment(session, caller, uuid, Action.VIEW)
    return await environment_out(session, request, env, app)


@router.patch("/environments/{uuid}/", response_model=EnvironmentOut)
async def update_environment(uuid: UUID, body: EnvironmentUpdate, request: Request, session: SessionDep,
                             caller: CallerDep, audit: AuditDep) -> EnvironmentOut:
    """Branch, port, health-check path and sanity timeout take effect at the next deployment;
    changing them takes the right to manage the environment. So does ``https_redirect``, which
    the ingress follows at once: the controller re-routes what runs now.

    ``instances`` and ``memory_mb`` scale it now, within the application's plan, and
    take only the right to deploy (a member's): a new count goes to the controller, which adds
    or removes instances of the serving release; a new size redeploys the serving release at
    that size without a build (``deployment_in_progress``), or, with nothing deployed yet,
    applies to the next deployment. A change of size while a deployment is under way is a 409."""
    sent = body.sent()
    sizes = {k: v for k, v in sent.items() if k in scaling.FIELDS}
    settings = {k: v for k, v in sent.items() if k not in scaling.FIELDS}
    action = Action.OPERATE if sizes and not settings else Action.MANAGE
    env, app = await lookups.environment(session, caller, uuid, action)
    changed = service.update_environment(env, settings)
    if "https_redirect" in changed:
        await domains.announce(session, request.app.state.runtime.outbox, env, app)
    scaled = await scaling.scale(session, request.app.state.runtime.outbox, request.app.state.deployments, caller,
                                 env, app, sizes)
    changed |= scaled.changed
    audit.record(app.organisation_id, "environment.update", "environment", env.id,
                 f"Environment {env.slug} of {app.slug} changed: {', '.join(changed) or 'nothing'}", changed)
    if scaled.redeploy is not None:
        audit.record(app.organisation_id, "deployment.create", "deployment", scaled.redeploy.id,
                     f"Deployment of {app.slug}/{env.slug} requested (redeploying "
                     f"{scaled.redeploy.source_deployment_id} at {env.memory_mb} MB)",
                     {"environment": env.id, "redeploy": scaled.redeploy.source_deployment_id,
                      "memory_mb": env.memory_mb})
    return await environment_out(session, request, env, app)


@router.get("/environments/{uuid}/events/", response_model=Page[EnvironmentEventOut])
async def list_environment_events(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                                 params: Annotated[PageParams, Depends()]) -> dict:
    """What the platform did to or saw of the environment's instances outside deployments
    (restarts, lost runners, replaced or moved instances, scaling), newest first."""
    env, _ = await lookups.environment(session, caller, uuid, Action.VIEW)

    async def serialize(rows):
        return [EnvironmentEventOut(uuid=e.id, environment=e.environment_id, instance=e.instance_id, reason=e.reason,
                                    message=e.message, timestamp=e.occurred_at) for e in rows]

    return await paginate(session, environment_events.newest_first(env), request, params, serialize)


@router.delete("/environments/{uuid}/", status_code=204, response_class=Response)
async def delete_environment(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                             audit: AuditDep) -> Response:
    """A custom environment only; its containers and routes stop."""
    env, app = await lookups.environment(session, caller, uuid, Action.MANAGE)
    service.record_deleted(audit, env, app)
    await service.delete_environment(session, request.app.state.runtime.outbox, env, app)
    return Response(status_code=204)
