"""Which regions an organisation may see and put applications in, and which a plan group allows.

A region dedicated to an organisation exists, for every other one, nowhere: it is not listed,
and naming it is answered as naming a region that does not exist. A retired region is that
for everyone. The free plan group (Divio's Developer) deploys only to the public regions the
operator marked for it, and so does an application on no plan group (it has the free plan's
limits); any other plan group to every public region and to the regions dedicated to the
application's organisation.
"""
from uuid import UUID

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import PhysicalRegion, PlanGroup, Region
from ..domain.errors import ApiError

NOT_FOUND = "Region not found."


def visible_to(organisations: set[UUID]) -> ColumnElement[bool]:
    """Over Region: in service, and public or dedicated to one of these organisations."""
    return and_(Region.retired_at.is_(None),
                or_(Region.organisation_id.is_(None), Region.organisation_id.in_(organisations)))


def allowed_by(group: PlanGroup | None, organisations: set[UUID]) -> ColumnElement[bool]:
    """Over Region: where an application of one of these organisations on this plan group may be."""
    if group is None or group.is_free:  # no plan has the free plan's limits, and its regions
        return and_(Region.retired_at.is_(None), Region.organisation_id.is_(None), Region.free_plan)
    if group is not None and group.organisation_id is not None:
        # A dedicated plan group serves its own organisation alone.
        organisations = organisations & {group.organisation_id}
    return visible_to(organisations)


def listed(where: ColumnElement[bool]) -> Select:
    """Regions in the order every list shows them: the default one first, then by name."""
    return select(Region).where(where).order_by(Region.is_default.desc(), Region.name, Region.id)


async def allowed(session: AsyncSession, group: PlanGroup | None, organisation_id: UUID) -> list[Region]:
    return list((await session.execute(listed(allowed_by(group, {organisation_id})))).scalars())


async def physical_of(session: AsyncSession, regions: list[Region]) -> dict[UUID, PhysicalRegion]:
    """Each region's physical region (vendor, location), by the physical region's id."""
    ids = {r.physical_region_id for r in regions}
    return {p.id: p for p in (await session.execute(select(PhysicalRegion).where(PhysicalRegion.id.in_(ids))))
            .scalars()}


def _plan_rule(group: PlanGroup | None, allowed_regions: list[Region]) -> str:
    names = ", ".join(f"{r.name} ({r.slug})" for r in allowed_regions)
    plan = f"The {group.name} plan" if group is not None else "An application without a plan"
    return f"{plan} deploys only to {names}." if names else f"{plan} may deploy to no region."


async def for_new_application(session: AsyncSession, region_id: UUID | None, group: PlanGroup | None,
                              organisation_id: UUID) -> Region:
    """The region a new application goes to: the one asked for, if its plan group allows it
    there; else (none asked for) the default region if allowed, else the first allowed."""
    choices = await allowed(session, group, organisation_id)
    if region_id is None:
        if not choices:
            raise ApiError(_plan_rule(group, choices), "region")
        return next((r for r in choices if r.is_default), choices[0])
    region = await session.get(Region, region_id)
    if region is None or region.retired_at is not None or region.organisation_id not in (None, organisation_id):
        # Another organisation's dedicated region is answered as one that does not exist.
        raise ApiError(NOT_FOUND, "region")
    if region.id not in {r.id for r in choices}:
        raise ApiError(_plan_rule(group, choices), "region")
    return region


async def check_plan_allows(session: AsyncSession, group: PlanGroup | None, region: Region,
                            organisation_id: UUID, field: str = "plan_group") -> None:
    """An application's plan group changes only to one that allows the region it is in."""
    choices = await allowed(session, group, organisation_id)
    if region.id not in {r.id for r in choices}:
        raise ApiError(f"{_plan_rule(group, choices)} This application is in {region.name} ({region.slug}).", field)
