"""The plans and prices a new platform starts with. An operator changes them afterwards
(`regio billing …`); seeding never overwrites what is there.

Two plan groups, as Divio offers them: Developer (free: one 256 MB instance per environment,
no custom domains, sleeps when idle; only in the regions marked for the free plan) and
Business (Starter and Business plans)."""
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.billing import Plan, PlanPrice, UsagePrice
from ..db.models import PlanGroup

_HOURS = 720  # a month of 30 days
_PLANS = {
    "Developer": [
        dict(name="Developer", is_free=True, memory_sizes_mb=[256], max_instances=1, scalable_environments=[],
             custom_domains=False, sleeps_when_idle=True, sleep_after_seconds=900, monthly="0.00",
             included={"instance": 2 * 0.25 * _HOURS, "database_storage": 1 * _HOURS, "bucket_storage": 1 * _HOURS,
                       "requests": 1, "bytes_served": 5, "build": 100}),
    ],
    "Business": [
        dict(name="Starter", memory_sizes_mb=[256, 512, 1024], max_instances=2, scalable_environments=["live"],
             custom_domains=True, monthly="25.00",
             included={"instance": 2 * 1 * _HOURS, "database_storage": 5 * _HOURS, "bucket_storage": 10 * _HOURS,
                       "requests": 5, "bytes_served": 50, "build": 500}),
        dict(name="Business", memory_sizes_mb=[256, 512, 1024, 2048, 4096], max_instances=4,
             scalable_environments=None, custom_domains=True, monthly="99.00",
             included={"instance": 4 * 2 * _HOURS, "database_storage": 20 * _HOURS, "bucket_storage": 50 * _HOURS,
                       "requests": 20, "bytes_served": 200, "build": 2000}),
    ],
}
# Per billing unit (domain/usage.py) beyond what a plan includes.
_USAGE_PRICES = {"instance": "0.012", "database_storage": "0.0003", "bucket_storage": "0.00005",
                 "requests": "0.40", "bytes_served": "0.05", "build": "0.01"}


async def ensure_seeded(session: AsyncSession, currency: str) -> None:
    if not (await session.execute(select(PlanGroup.id))).first():
        for group_name, plans in _PLANS.items():
            group = PlanGroup(name=group_name, is_free=all(p.get("is_free") for p in plans))
            session.add(group)
            await session.flush()
            for position, spec in enumerate(plans):
                spec = dict(spec)
                monthly = Decimal(spec.pop("monthly"))
                plan = Plan(plan_group_id=group.id, position=position, **spec)
                session.add(plan)
                await session.flush()
                session.add(PlanPrice(plan_id=plan.id, region_id=None, currency=currency, monthly=monthly))
    if not (await session.execute(select(UsagePrice.id))).first():
        session.add_all(UsagePrice(kind=kind, region_id=None, currency=currency, unit_price=Decimal(price))
                        for kind, price in _USAGE_PRICES.items())
    await session.flush()
