"""Applications: the list with each environment's state, creating one from a repository,
and an application's page."""
import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep

from ...api.routes.applications import repository_out
from ...db.models import Application, Deployment, Migration, Organisation, PlanGroup, Region, Repository
from ...domain.errors import ApiError
from ...services import applications as service
from ...services import lookups, migrations, regions, repositories, subscriptions
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep
from ..summaries import summaries
from ..templating import render
from . import plans

router = APIRouter(prefix="/web", include_in_schema=False)
HISTORY = 10  # earlier deployments shown per environment


@router.get("/")
async def list_applications(request: Request, session: SessionDep, web: WebCallerDep):
    apps = (await session.execute(select(Application).where(web.caller.visible_applications())
                                  .order_by(Application.created_at.desc()))).scalars().all()
    orgs = dict((await session.execute(select(Organisation.id, Organisation.name).where(
        Organisation.id.in_({a.organisation_id for a in apps})))).all())
    rows = [(a, orgs.get(a.organisation_id, ""), await summaries(session, request, web.caller, a)) for a in apps]
    return render(request, "applications.html", web, rows=rows)


async def _choices(request: Request, session, caller) -> dict:
    """Where an application may be made: organisations the caller manages as a whole, the
    regions they may use (the public ones and those dedicated to one of them, with the physical
    region, the organisation it is dedicated to and its state) and the plan groups those organisations may use."""
    managed = [o for o, g in caller.grants.items() if g.allows(Action.MANAGE) and not g.scoped]
    orgs = (await session.execute(select(Organisation).where(Organisation.id.in_(managed))
                                  .order_by(Organisation.name))).scalars().all()
    usable = list((await session.execute(regions.listed(regions.visible_to(set(managed))))).scalars())
    physical = await regions.physical_of(session, usable)
    names = {o.id: o.name for o in orgs}
    health = request.app.state.region_health
    choices = [(r, physical[r.physical_region_id], names.get(r.organisation_id), health.state_of(r.slug).state)
               for r in usable]
    plans = (await session.execute(select(PlanGroup).where(service.usable_plan_groups(set(managed)))
                                   .order_by(PlanGroup.name))).scalars().all()
    return {"organisations": orgs, "regions": choices, "plan_groups": plans}


@router.get("/applications/new")
async def new_application(request: Request, session: SessionDep, web: WebCallerDep):
    return render(request, "application_new.html", web, **await _choices(request, session, web.caller))


def _slug_from(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")


@router.post("/applications")
async def create_application(
    request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
    organisation: Annotated[UUID, Form()], name: Annotated[str, Form(min_length=1, max_length=200)],
    repository_url: Annotated[str, Form(min_length=1, max_length=2000)], region: Annotated[UUID, Form()],
    branch: Annotated[str, Form(min_length=1, max_length=255)] = "main", slug: Annotated[str, Form()] = "",
    plan_group: Annotated[str, Form()] = "",
):
    """The repository and the application, as a client makes them through the API."""
    caller = web.caller
    try:
        plan_group_id = UUID(plan_group) if plan_group else None
    except ValueError:
        raise ApiError("Choose a plan group.", "plan_group") from None
    repo = await repositories.create(session, caller, request.app.state.vault, organisation, repository_url)
    audit.record(repo.organisation_id, "repository.create", "repository", repo.id, f"Repository {repo.url} added",
                 {"url": repo.url})
    app = await service.create_application(
        session, caller, request.app.state.vault, name=name.strip(), slug=slug.strip() or _slug_from(name),
        organisation_id=organisation, region_id=region, repository_id=repo.id, branch=branch.strip(),
        plan_group_id=plan_group_id, release_commands=[], at=request.app.state.clock.now())
    audit.record(app.organisation_id, "application.create", "application", app.id,
                 f"Application {app.slug} created", {"name": app.name, "slug": app.slug, "region": app.region_id})
    return RedirectResponse(f"/web/applications/{app.id}", status_code=303)


@router.get("/applications/{uuid}")
async def application_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    app = await lookups.application(session, web.caller, uuid, Action.VIEW)
    envs = await summaries(session, request, web.caller, app)
    history = {}
    for s in envs:
        history[s.env.id] = (await session.execute(
            select(Deployment).where(Deployment.environment_id == s.env.id)
            .order_by(Deployment.created_at.desc()).limit(HISTORY))).scalars().all()
    region = await session.get(Region, app.region_id)
    physical = (await regions.physical_of(session, [region]))[region.physical_region_id]
    group = await session.get(PlanGroup, app.plan_group_id) if app.plan_group_id else None
    plan = await subscriptions.current_plan(session, app)
    repo = await session.get(Repository, app.repository_id) if app.repository_id else None
    grant = web.caller.grants.get(app.organisation_id)
    manages = grant is not None and grant.allows(Action.MANAGE) and not grant.scoped
    # As the API shows it: the URL without any secret, the deploy key's public half.
    return render(request, "application.html", web, app=app, envs=envs, history=history, region=region,
                  physical=physical, region_state=request.app.state.region_health.state_of(region.slug).state,
                  plan=plan, plan_group=group,
                  plan_choices=await plans.plan_choices(session, web.caller, app,
                                                        request.app.state.settings.billing_currency),
                  repository=repository_out(repo) if repo else None,
                  migrations=await _migrations(session, app),
                  destinations=await migrations.destinations(session, app) if manages else [])


async def _migrations(session, app: Application) -> list[tuple[Migration, str]]:
    """The application's latest migrations, each with its target region's name."""
    return list((await session.execute(
        select(Migration, Region.name).join(Region, Region.id == Migration.target_region_id)
        .where(Migration.application_id == app.id).order_by(Migration.created_at.desc()).limit(HISTORY))).all())

