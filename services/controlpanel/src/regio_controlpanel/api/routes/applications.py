from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import Application, Environment, Region, Repository
from ...domain.environments import default_domain
from ...services import applications as service
from ...services import lookups, repositories
from ...services.access import Action, Caller
from ..deps import AuditDep, CallerDep, ClockDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import (
    ApplicationIn,
    ApplicationOut,
    ApplicationUpdate,
    EnvironmentStatus,
    ReleaseCommand,
    RepositoryIn,
    RepositoryOut,
)

router = Router(prefix="/apps/v3", tags=["applications"])


def site_url(app: Application, env: Environment, region: Region) -> str:
    """At the port the region's own ingress serves sites on (each region has its own)."""
    port = region.site_port or 80
    suffix = "" if port == 80 else f":{port}"
    return f"http://{default_domain(app.slug, env.slug, region.domain)}{suffix}/"


async def application_out(session: AsyncSession, request: Request, caller: Caller, app: Application) -> ApplicationOut:
    # A caller scoped to some environments sees only those.
    caller_filter = caller.visible_environments()
    region = await session.get(Region, app.region_id)
    envs = (await session.execute(select(Environment).join(Application, Application.id == Environment.application_id)
                                  .where(Environment.application_id == app.id, caller_filter)
                                  .order_by(Environment.created_at))).scalars().all()
    statuses = [EnvironmentStatus(uuid=e.id, slug=e.slug, branch=e.branch, site_url=site_url(app, e, region),
                                  deployed=False) for e in envs]
    out = ApplicationOut(uuid=app.id, name=app.name, slug=app.slug, organisation=app.organisation_id,
                         region=app.region_id, repository=app.repository_id, plan_group=app.plan_group_id,
                         release_commands=[ReleaseCommand(**c) for c in app.release_commands], created_at=app.created_at, environments=statuses)
    for status in statuses:
        setattr(out, f"{status.slug}_status", status.model_dump(mode="json"))
    return out


@router.post("/repositories/", response_model=RepositoryOut, status_code=201)
async def create_repository(body: RepositoryIn, request: Request, session: SessionDep, caller: CallerDep,
                            audit: AuditDep) -> RepositoryOut:
    """An HTTPS token may be given in the URL (https://user:token@host/...): it is stored
    encrypted and never shown again. An SSH repository gets a deploy key (``deploy_key``)."""
    repo = await repositories.create(session, caller, request.app.state.vault, body.organisation, body.url)
    audit.record(repo.organisation_id, "repository.create", "repository", repo.id, f"Repository {repo.url} added",
                 {"url": repo.url})
    return repository_out(repo)


def repository_out(repo: Repository) -> RepositoryOut:
    return RepositoryOut(uuid=repo.id, organisation=repo.organisation_id, url=repositories.shown_url(repo),
                         credentials_set=repositories.has_credentials(repo), deploy_key=repo.deploy_key,
                         created_at=repo.created_at)


@router.get("/repositories/", response_model=Page[RepositoryOut])
async def list_repositories(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()]) -> dict:
    whole = [org for org, grant in caller.grants.items() if grant.allows(Action.VIEW) and not grant.scoped]
    query = select(Repository).where(Repository.organisation_id.in_(whole)).order_by(Repository.created_at.desc())

    async def serialize(rows):
        return [repository_out(r) for r in rows]

    return await paginate(session, query, request, params, serialize)


@router.get("/repositories/{uuid}/", response_model=RepositoryOut)
async def get_repository(uuid: UUID, session: SessionDep, caller: CallerDep) -> RepositoryOut:
    return repository_out(await service.repository(session, caller, uuid, Action.VIEW))


@router.post("/applications/", response_model=ApplicationOut, status_code=201)
async def create_application(body: ApplicationIn, request: Request, session: SessionDep, caller: CallerDep,
                             audit: AuditDep, clock: ClockDep) -> ApplicationOut:
    app = await service.create_application(
        session, caller, request.app.state.vault, name=body.name, slug=body.slug, organisation_id=body.organisation,
        region_id=body.region, repository_id=body.repository, branch=body.branch, plan_group_id=body.plan_group,
        plan_id=body.plan, release_commands=[c.model_dump() for c in body.release_commands or []],
        at=clock.now())
    audit.record(app.organisation_id, "application.create", "application", app.id,
                 f"Application {app.slug} created", {"name": app.name, "slug": app.slug, "region": app.region_id,
                                                     "plan_group": app.plan_group_id})
    return await application_out(session, request, caller, app)


@router.get("/applications/", response_model=Page[ApplicationOut])
async def list_applications(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()],
                            slug: str | None = None, organisation: UUID | None = None) -> dict:
    query = select(Application).where(caller.visible_applications())
    if slug is not None:
        query = query.where(Application.slug == slug)
    if organisation is not None:
        query = query.where(Application.organisation_id == organisation)

    async def serialize(rows):
        return [await application_out(session, request, caller, a) for a in rows]

    return await paginate(session, query.order_by(Application.created_at.desc()), request, params, serialize)


@router.get("/applications/{uuid}/", response_model=ApplicationOut)
async def get_application(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> ApplicationOut:
    return await application_out(session, request, caller, await lookups.application(session, caller, uuid, Action.VIEW))


@router.patch("/applications/{uuid}/", response_model=ApplicationOut)
async def update_application(uuid: UUID, body: ApplicationUpdate, request: Request, session: SessionDep,
                             caller: CallerDep, audit: AuditDep, clock: ClockDep) -> ApplicationOut:
    changes = body.sent()
    app = await lookups.application(session, caller, uuid, service.update_action(changes))
    changed = await service.update_application(session, caller, app, changes, clock.now())
    audit.record(app.organisation_id, "application.update", "application", app.id,
                 f"Application {app.slug} changed: {', '.join(changed) or 'nothing'}", changed)
    if "plan" in changed:  # a new plan group puts it on that group's first plan, as POST subscriptions/ does
        audit.record(app.organisation_id, "subscription.change", "application", app.id,
                     f"Application {app.slug} moved to plan group {changed['plan_group']}'s first plan",
                     {"plan": changed["plan"], "plan_group": changed["plan_group"]})
    return await application_out(session, request, caller, app)


@router.delete("/applications/{uuid}/", status_code=204, response_class=Response)
async def delete_application(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                             audit: AuditDep, clock: ClockDep) -> Response:
    """Stops its containers and routes, and deletes it with its environments, variables,
    domains and deployments."""
    app = await lookups.application(session, caller, uuid, Action.MANAGE)
    audit.record(app.organisation_id, "application.delete", "application", app.id,
                 f"Application {app.slug} deleted", {"slug": app.slug})
    await service.delete_application(session, request.app.state.runtime.outbox, app, clock.now())
    return Response(status_code=204)
