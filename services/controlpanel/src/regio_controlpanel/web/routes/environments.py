"""An environment's page (its size, settings, variables, domains, services and backups),
scaling it within its application's plan, and changing its settings."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep
from regio_common.plans import cpu_share

from ...db.models import Application, Domain, Environment, EnvironmentVariable, Region
from ...domain.environments import DEFAULT_ENVIRONMENTS
from ...domain.errors import ApiError
from ...domain.scaling import most_instances
from ...services import (
    backups,
    domain_verification,
    domains,
    environment_events,
    lookups,
    scaling,
    service_instances,
    subscriptions,
)
from ...services import environments as service
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep
from ..summaries import summarise
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)
EVENTS = 10
BACKUPS = 10  # the newest shown


@router.get("/environments/{uuid}")
async def environment_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    env, app = await lookups.environment(session, web.caller, uuid, Action.VIEW)
    plan = await subscriptions.current_plan(session, app)  # shown, not checked: no lock
    variables = (await session.execute(select(EnvironmentVariable).where(EnvironmentVariable.environment_id == env.id)
                                       .order_by(EnvironmentVariable.name))).scalars().all()
    instances = (await session.execute(service_instances.instances_query(web.caller, env.id))).scalars().all()
    services = await service_instances.services_by_id(session, {i.service_id for i in instances})
    offered = (await session.execute(service_instances.services_query(web.caller, application_id=app.id))
               ).scalars().all()
    custom_domains = (await session.execute(select(Domain).where(Domain.environment_id == env.id)
                                            .order_by(Domain.created_at))).scalars().all()
    events = (await session.execute(environment_events.newest_first(env).limit(EVENTS))).scalars().all()
    kept = (await session.execute(backups.backups_query(web.caller, env.id).limit(BACKUPS))).scalars().all()
    siblings = (await session.execute(select(Environment).join(Application, Application.id == Environment.application_id)
                                      .where(Environment.application_id == app.id, web.caller.visible_environments())
                                      .order_by(Environment.created_at))).scalars().all()
    return render(request, "environment.html", web, app=app, env=env, region=await session.get(Region, app.region_id),
                  summary=await summarise(session, request, app, env), plan=plan,
                  most_instances=most_instances(plan, env.slug), memory_sizes=sorted(plan.memory_sizes_mb),
                  cpu_share=cpu_share,
                  variables=variables, custom_domains=custom_domains, instances=instances, services=services,
                  challenges={d.id: (domain_verification.record_name(d.domain),
                                     request.app.state.vault.domain_challenge(app.organisation_id, d.domain))
                              for d in custom_domains},
                  offered=offered, events=events, backups=kept, deletable=env.slug not in DEFAULT_ENVIRONMENTS,
                  siblings=siblings,
                  backup_parts=await backups.parts_of(session, [b.id for b in kept]))


@router.post("/environments/{uuid}/scale")
async def scale(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                instances: Annotated[int, Form(ge=1)], memory_mb: Annotated[int, Form()]):
    """As PATCH /apps/v3/environments/{uuid}/ with only instances and memory_mb: the right to
    deploy is enough; a new size redeploys the serving release at that size."""
    env, app = await lookups.environment(session, web.caller, uuid, Action.OPERATE)
    scaled = await scaling.scale(session, request.app.state.runtime.outbox, request.app.state.deployments,
                                 web.caller, env, app, {"instances": instances, "memory_mb": memory_mb})
    audit.record(app.organisation_id, "environment.update", "environment", env.id,
                 f"Environment {env.slug} of {app.slug} changed: {', '.join(scaled.changed) or 'nothing'}",
                 scaled.changed)
    if scaled.redeploy is not None:
        audit.record(app.organisation_id, "deployment.create", "deployment", scaled.redeploy.id,
                     f"Deployment of {app.slug}/{env.slug} requested (redeploying "
                     f"{scaled.redeploy.source_deployment_id} at {env.memory_mb} MB)",
                     {"environment": env.id, "redeploy": scaled.redeploy.source_deployment_id,
                      "memory_mb": env.memory_mb})
        return RedirectResponse(f"/web/deployments/{scaled.redeploy.id}", status_code=303)
    return RedirectResponse(f"/web/environments/{env.id}#scaling", status_code=303)


def _port(given: str) -> int | None:
    """Empty: the image's EXPOSEd port, else 80 (as the API's null)."""
    if not given.strip():
        return None
    if not given.strip().isdigit() or not 1 <= int(given) <= 65535:
        raise ApiError("A port from 1 to 65535, or empty for the port the image EXPOSEs.", "port")
    return int(given)


@router.post("/environments/{uuid}/settings")
async def change_settings(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                          branch: Annotated[str, Form(min_length=1, max_length=255)],
                          health_check_path: Annotated[str, Form(min_length=1, max_length=255, pattern=r"^/")],
                          https_redirect: Annotated[bool, Form()] = False,
                          port: Annotated[str, Form(max_length=5)] = ""):
    """As PATCH /apps/v3/environments/{uuid}/ with these settings: it takes the right to manage
    the environment. Branch, port and health check apply at the next deployment; the HTTPS redirect
    at once (the controller re-routes what runs now)."""
    env, app = await lookups.environment(session, web.caller, uuid, Action.MANAGE)
    if not branch.strip():
        raise ApiError("Name a branch.", "branch")
    changed = service.update_environment(env, {"branch": branch.strip(), "health_check_path": health_check_path,
                                               "https_redirect": https_redirect, "port": _port(port)})
    if "https_redirect" in changed:
        await domains.announce(session, request.app.state.runtime.outbox, env, app)
    audit.record(app.organisation_id, "environment.update", "environment", env.id,
                 f"Environment {env.slug} of {app.slug} changed: {', '.join(changed) or 'nothing'}", changed)
    return RedirectResponse(f"/web/environments/{env.id}#settings", status_code=303)


@router.post("/applications/{uuid}/environments")
async def add_environment(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                          slug: Annotated[str, Form(min_length=1, max_length=63)], copy_from: Annotated[UUID, Form()],
                          branch: Annotated[str, Form(max_length=255)] = ""):
    """As POST /apps/v3/environments/: a custom environment, with the settings and variables of
    the one it copies."""
    app = await lookups.application(session, web.caller, uuid, Action.MANAGE)
    source = await service.copy_source(session, web.caller, app, copy_from)
    env = await service.create_environment(session, request.app.state.vault, app, source, slug=slug.strip(),
                                           branch=branch.strip() or None)
    service.record_created(audit, env, app, source)
    return RedirectResponse(f"/web/environments/{env.id}", status_code=303)


@router.post("/environments/{uuid}/delete")
async def delete_environment(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep,
                             audit: WebAuditDep):
    """As DELETE /apps/v3/environments/{uuid}/: a custom one only; its containers, routes and data go."""
    env, app = await lookups.environment(session, web.caller, uuid, Action.MANAGE)
    service.record_deleted(audit, env, app)
    await service.delete_environment(session, request.app.state.runtime.outbox, env, app)
    return RedirectResponse(f"/web/applications/{app.id}", status_code=303)
