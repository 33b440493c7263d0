from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import PhysicalRegion, PlanGroup, Region
from ...domain.errors import NotFound
from ...services.access import Caller
from ...services.applications import usable_plan_groups
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import PlanGroupOut, RegionOut

router = Router(tags=["regions"])


def _visible_regions(caller: Caller):
    """Public regions, and the regions dedicated to the caller's organisations."""
    return select(Region).where(or_(Region.organisation_id.is_(None), Region.organisation_id.in_(caller.organisations)))


async def _regions_out(session: AsyncSession, rows) -> list[RegionOut]:
    physical = {p.id: p for p in (await session.execute(select(PhysicalRegion))).scalars()}
    return [RegionOut(uuid=r.id, name=r.name, slug=r.slug, domain=r.domain,
                      vendor=physical[r.physical_region_id].vendor,
                      location=physical[r.physical_region_id].location,
                      is_dedicated=r.organisation_id is not None) for r in rows]


@router.get("/apps/v3/regions/", response_model=Page[RegionOut])
async def regions(request: Request, session: SessionDep, caller: CallerDep,
                  params: Annotated[PageParams, Depends()]) -> dict:
    query = _visible_regions(caller).order_by(Region.is_default.desc(), Region.name)

    async def serialize(rows):
        return await _regions_out(session, rows)

    return await paginate(session, query, request, params, serialize)


@router.get("/apps/v3/regions/{uuid}/", response_model=RegionOut)
async def region(uuid: UUID, session: SessionDep, caller: CallerDep) -> RegionOut:
    found = (await session.execute(_visible_regions(caller).where(Region.id == uuid))).scalars().all()
    if not found:
        raise NotFound()
    return (await _regions_out(session, found))[0]


async def _plan_groups_out(session: AsyncSession, rows) -> list[PlanGroupOut]:
    public = list((await session.execute(select(Region.id).where(Region.organisation_id.is_(None)))).scalars())
    return [PlanGroupOut(uuid=p.id, name=p.name, regions=public, max_instances=p.max_instances,
                         memory_mb=p.memory_mb) for p in rows]


@router.get("/billing/v3/application-plan-groups/", response_model=Page[PlanGroupOut])
async def plan_groups(request: Request, session: SessionDep, caller: CallerDep,
                      params: Annotated[PageParams, Depends()]) -> dict:
    async def serialize(rows):
        return await _plan_groups_out(session, rows)

    query = select(PlanGroup).where(usable_plan_groups(caller.organisations)).order_by(PlanGroup.name)
    return await paginate(session, query, request, params, serialize)


@router.get("/billing/v3/application-plan-groups/{uuid}/", response_model=PlanGroupOut)
async def plan_group(uuid: UUID, session: SessionDep, caller: CallerDep) -> PlanGroupOut:
    group = (await session.execute(select(PlanGroup).where(
        PlanGroup.id == uuid, usable_plan_groups(caller.organisations)))).scalars().first()
    if group is None:
        raise NotFound()
    return (await _plan_groups_out(session, [group]))[0]
