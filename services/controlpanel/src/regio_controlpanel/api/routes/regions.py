from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import or_, select

from ...db.models import PhysicalRegion, PlanGroup, Region
from ..deps import CallerDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router
from ..schemas import PlanGroupOut, RegionOut

router = Router(tags=["regions"])


@router.get("/apps/v3/regions/", response_model=Page[RegionOut])
async def regions(request: Request, session: SessionDep, caller: CallerDep,
                  params: Annotated[PageParams, Depends()]) -> dict:
    query = (select(Region).where(or_(Region.organisation_id.is_(None), Region.organisation_id.in_(caller.organisations)))
             .order_by(Region.is_default.desc(), Region.name))

    async def serialize(rows):
        physical = {p.id: p for p in (await session.execute(select(PhysicalRegion))).scalars()}
        return [RegionOut(uuid=r.id, name=r.name, slug=r.slug, domain=r.domain,
                          vendor=physical[r.physical_region_id].vendor,
                          location=physical[r.physical_region_id].location,
                          is_dedicated=r.organisation_id is not None) for r in rows]

    return await paginate(session, query, request, params, serialize)


@router.get("/billing/v3/application-plan-groups/", response_model=Page[PlanGroupOut])
async def plan_groups(request: Request, session: SessionDep, caller: CallerDep,
                      params: Annotated[PageParams, Depends()]) -> dict:
    async def serialize(rows):
        public = list((await session.execute(select(Region.id).where(Region.organisation_id.is_(None)))).scalars())
        return [PlanGroupOut(uuid=p.id, name=p.name, regions=public, max_instances=p.max_instances,
                             memory_mb=p.memory_mb) for p in rows]

    return await paginate(session, select(PlanGroup).order_by(PlanGroup.name), request, params, serialize)
