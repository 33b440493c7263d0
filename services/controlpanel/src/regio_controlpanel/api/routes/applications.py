from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import Application, Environment, Region, Repository
from ...domain.environments import default_domain
from ...services import applications as service
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import (
    ApplicationIn,
    ApplicationOut,
    EnvironmentStatus,
    RepositoryIn,
    RepositoryOut,
)

router = Router(prefix="/apps/v3", tags=["applications"])


def site_url(request: Request, app: Application, env: Environment, region: Region) -> str:
    port = request.app.state.settings.ingress_port
    suffix = "" if port == 80 else f":{port}"
    return f"http://{default_domain(app.slug, env.slug, region.domain)}{suffix}/"


async def application_out(session: AsyncSession, request: Request, app: Application) -> ApplicationOut:
    region = await session.get(Region, app.region_id)
    envs = (await session.execute(select(Environment).where(Environment.application_id == app.id)
                                  .order_by(Environment.created_at))).scalars().all()
    statuses = [EnvironmentStatus(uuid=e.id, slug=e.slug, branch=e.branch, site_url=site_url(request, app, e, region),
                                  deployed=False) for e in envs]
    out = ApplicationOut(uuid=app.id, name=app.name, slug=app.slug, organisation=app.organisation_id,
                         region=app.region_id, repository=app.repository_id, plan_group=app.plan_group_id,
                         created_at=app.created_at, environments=statuses)
    for status in statuses:
        setattr(out, f"{status.slug}_status", status.model_dump(mode="json"))
    return out


@router.post("/repositories/", response_model=RepositoryOut, status_code=201)
async def create_repository(body: RepositoryIn, session: SessionDep, caller: CallerDep) -> RepositoryOut:
    repo = await service.create_repository(session, caller, body.organisation, body.url)
    return RepositoryOut(uuid=repo.id, organisation=repo.organisation_id, url=repo.url, created_at=repo.created_at)


@router.get("/repositories/", response_model=Page[RepositoryOut])
async def list_repositories(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()]) -> dict:
    query = select(Repository).where(Repository.organisation_id.in_(caller.organisations)).order_by(Repository.created_at.desc())

    async def serialize(rows):
        return [RepositoryOut(uuid=r.id, organisation=r.organisation_id, url=r.url, created_at=r.created_at) for r in rows]

    return await paginate(session, query, request, params, serialize)


@router.post("/applications/", response_model=ApplicationOut, status_code=201)
async def create_application(body: ApplicationIn, request: Request, session: SessionDep, caller: CallerDep) -> ApplicationOut:
    app = await service.create_application(
        session, caller, request.app.state.vault, name=body.name, slug=body.slug, organisation_id=body.organisation,
        region_id=body.region, repository_id=body.repository, branch=body.branch, plan_group_id=body.plan_group)
    return await application_out(session, request, app)


@router.get("/applications/", response_model=Page[ApplicationOut])
async def list_applications(request: Request, session: SessionDep, caller: CallerDep,
                            params: Annotated[PageParams, Depends()],
                            slug: str | None = None, organisation: UUID | None = None) -> dict:
    query = select(Application).where(Application.organisation_id.in_(caller.organisations))
    if slug is not None:
        query = query.where(Application.slug == slug)
    if organisation is not None:
        query = query.where(Application.organisation_id == organisation)

    async def serialize(rows):
        return [await application_out(session, request, a) for a in rows]

    return await paginate(session, query.order_by(Application.created_at.desc()), request, params, serialize)


@router.get("/applications/{uuid}/", response_model=ApplicationOut)
async def get_application(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> ApplicationOut:
    return await application_out(session, request, await service.get_application(session, caller, uuid))
