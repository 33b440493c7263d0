from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import PlanGroup, Region
from ...domain.errors import NotFound
from ...services import regions as service
from ...services import subscriptions
from ...services.access import Caller
from ...services.applications import usable_plan_groups
from ..billing_schemas import PlanGroupOut
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import RegionOut
from .plans import plans_out

router = Router(tags=["regions"])
MAX_UUIDS = 100  # regions asked for by id in one request (the divio client asks for a plan group's)


async def _regions_out(request: Request, session: AsyncSession, rows: list[Region]) -> list[RegionOut]:
    physical = await service.physical_of(session, rows)
    health = request.app.state.region_health
    out = []
    for r in rows:
        state = health.state_of(r.slug)
        out.append(RegionOut(uuid=r.id, name=r.name, slug=r.slug, domain=r.domain,
                             vendor=physical[r.physical_region_id].vendor,
                             location=physical[r.physical_region_id].location,
                             is_dedicated=r.organisation_id is not None, free_plan=r.free_plan, state=state.state,
                             runners=state.runners, runners_ready=state.runners_ready,
                             memory_mb_free=state.memory_mb_free))
    return out


@router.get("/apps/v3/regions/", response_model=Page[RegionOut])
async def regions(request: Request, session: SessionDep, caller: CallerDep,
                  params: Annotated[PageParams, Depends()],
                  uuid: Annotated[list[UUID] | None, Query(max_length=MAX_UUIDS,
                                                           description="Only these regions.")] = None) -> dict:
    """The regions the caller may use: the public ones and those dedicated to their organisations."""
    query = service.listed(service.visible_to(caller.organisations))
    if uuid is not None:
        query = query.where(Region.id.in_(uuid))

    async def serialize(rows):
        return await _regions_out(request, session, rows)

    return await paginate(session, query, request, params, serialize)


@router.get("/apps/v3/regions/{uuid}/", response_model=RegionOut)
async def region(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> RegionOut:
    found = (await session.execute(service.listed(service.visible_to(caller.organisations))
                                   .where(Region.id == uuid))).scalars().all()
    if not found:
        raise NotFound()
    return (await _regions_out(request, session, found))[0]


def _organisations(caller: Caller, organisation: UUID | None) -> set[UUID]:
    """The organisations whose view is asked for: all the caller's, or the one named (an
    organisation the caller is not in has none of its own regions or plan groups shown)."""
    return caller.organisations if organisation is None else caller.organisations & {organisation}


async def _plan_groups_out(session: AsyncSession, caller: Caller, rows,
                           organisations: set[UUID]) -> list[PlanGroupOut]:
    out = []
    for p in rows:
        allowed = (await session.execute(select(Region.id).where(service.allowed_by(p, organisations))
                                          .order_by(Region.is_default.desc(), Region.name, Region.id))).scalars()
        plans = await plans_out(session, caller, await subscriptions.plans_of(session, p.id))
        out.append(PlanGroupOut(uuid=p.id, name=p.name, regions=list(allowed), is_free=p.is_free, plans=plans))
    return out


ORGANISATION = Query(description="The view of this organisation: its plan groups, and the regions each allows it.")


@router.get("/billing/v3/application-plan-groups/", response_model=Page[PlanGroupOut],
            response_model_exclude_unset=True)
async def plan_groups(request: Request, session: SessionDep, caller: CallerDep,
                      params: Annotated[PageParams, Depends()],
                      organisation: Annotated[UUID | None, ORGANISATION] = None) -> dict:
    organisations = _organisations(caller, organisation)

    async def serialize(rows):
        return await _plan_groups_out(session, caller, rows, organisations)

    query = select(PlanGroup).where(usable_plan_groups(organisations)).order_by(PlanGroup.name)
    return await paginate(session, query, request, params, serialize)


@router.get("/billing/v3/application-plan-groups/{uuid}/", response_model=PlanGroupOut,
            response_model_exclude_unset=True)
async def plan_group(uuid: UUID, session: SessionDep, caller: CallerDep,
                     organisation: Annotated[UUID | None, ORGANISATION] = None) -> PlanGroupOut:
    organisations = _organisations(caller, organisation)
    group = (await session.execute(select(PlanGroup).where(
        PlanGroup.id == uuid, usable_plan_groups(organisations)))).scalars().first()
    if group is None:
        raise NotFound()
    return (await _plan_groups_out(session, caller, [group], organisations))[0]
