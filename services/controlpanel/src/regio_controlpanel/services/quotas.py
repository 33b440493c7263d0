"""The operator's quotas of an organisation (db/billing.py: OrganisationBilling): how many
applications, free applications and instances it may have, and how much its databases and
buckets may hold before it adds another service instance. No row, or a null: no quota.

A refusal is a 400 naming the request's field and the quota. While a quota applies, the
check holds the organisation's row lock until the request commits, so two requests at once
cannot both take the last place."""
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.billing import OrganisationBilling, Plan, Subscription, UsageEvent
from ..db.models import Application, Environment, Organisation, ServiceInstance
from ..domain.errors import ApiError
from ..domain.service_instances import State

STORAGE_KINDS = ("database_storage", "bucket_storage")


class QuotaReached(ApiError):
    def __init__(self, quota: int | Decimal, what: str, name: str, field: str):
        super().__init__(f"This organisation's quota of {quota} {what} is reached (quota: {name}).", field)


async def _quota(session: AsyncSession, organisation_id: UUID, name: str) -> int | Decimal | None:
    billing = await session.get(OrganisationBilling, organisation_id)
    quota = getattr(billing, name) if billing is not None else None
    if quota is not None:
        await session.execute(select(Organisation.id).where(Organisation.id == organisation_id).with_for_update())
    return quota


async def check_new_application(session: AsyncSession, organisation_id: UUID, *, free: bool, instances: int,
                                free_field: str = "plan_group") -> None:
    """Before an application is added: its count, its plan's freeness, its environments'
    ``instances``."""
    quota = await _quota(session, organisation_id, "max_applications")
    if quota is not None and await _applications(session, organisation_id) >= quota:
        raise QuotaReached(quota, "applications", "applications", "organisation")
    if free:
        quota = await _quota(session, organisation_id, "max_free_applications")
        if quota is not None and await free_applications(session, organisation_id) >= quota:
            raise QuotaReached(quota, "free applications", "free_applications", free_field)
    await check_instances(session, organisation_id, added=instances, field="organisation")


async def check_move_to_free(session: AsyncSession, organisation_id: UUID, field: str = "plan") -> None:
    """Before an application of the organisation moves to a free plan (it is not on one now)."""
    quota = await _quota(session, organisation_id, "max_free_applications")
    if quota is not None and await free_applications(session, organisation_id) >= quota:
        raise QuotaReached(quota, "free applications", "free_applications", field)


async def check_instances(session: AsyncSession, organisation_id: UUID, *, added: int,
                          field: str = "instances") -> None:
    """``added`` more instances (the difference a change makes) over every environment."""
    if added <= 0:
        return
    quota = await _quota(session, organisation_id, "max_instances")
    if quota is None:
        return
    configured = (await session.execute(
        select(func.coalesce(func.sum(Environment.instances), 0))
        .join(Application, Application.id == Environment.application_id)
        .where(Application.organisation_id == organisation_id))).scalar_one()
    if configured + added > quota:
        raise QuotaReached(quota, "instances", "instances", field)


async def check_service_storage(session: AsyncSession, organisation_id: UUID, field: str = "service") -> None:
    """Before a service instance is added: the organisation's databases and buckets, as last
    measured, hold less than its quota of GB."""
    quota = await _quota(session, organisation_id, "max_service_gb")
    if quota is not None and await service_gb(session, organisation_id) >= quota:
        raise QuotaReached(quota, "GB of databases and buckets", "service_gb", field)


async def service_gb(session: AsyncSession, organisation_id: UUID) -> Decimal:
    """The last measured size of each of its service instances whose data exists: a storage
    event holds GB-hours of one sample's period, so its GB are quantity / period hours."""
    newest = (select(UsageEvent.quantity, UsageEvent.period_start, UsageEvent.period_end)
              .join(ServiceInstance, ServiceInstance.id == UsageEvent.service_instance_id)
              .where(UsageEvent.organisation_id == organisation_id, UsageEvent.kind.in_(STORAGE_KINDS),
                     ServiceInstance.state != State.REMOVED)
              .order_by(UsageEvent.service_instance_id, UsageEvent.period_end.desc(), UsageEvent.id.desc())
              .ext(distinct_on(UsageEvent.service_instance_id)))
    total = Decimal(0)
    for quantity, start, end in (await session.execute(newest)).all():
        hours = Decimal((end - start).total_seconds()) / Decimal(3600)
        if hours > 0:
            total += quantity / hours
    return total


async def _applications(session: AsyncSession, organisation_id: UUID) -> int:
    return (await session.execute(select(func.count()).select_from(Application)
                                  .where(Application.organisation_id == organisation_id))).scalar_one()


async def free_applications(session: AsyncSession, organisation_id: UUID) -> int:
    """Its applications whose open subscription is to a free plan."""
    return (await session.execute(
        select(func.count()).select_from(Subscription).join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.organisation_id == organisation_id, Subscription.ended_at.is_(None),
               Plan.is_free))).scalar_one()
