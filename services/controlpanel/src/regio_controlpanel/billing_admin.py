"""The operator's billing (`regio billing …`): the plans and their prices, the usage price
list, an organisation's currency, tax rate and quotas, and closing a month into invoices.
Run with the control panel's environment; prints JSON.

    plans
    plan-price PLAN_ID AMOUNT [--currency EUR] [--region SLUG]
    usage-price KIND PRICE [--currency EUR] [--region SLUG]
    organisation ORG_ID [--tax-rate 0.081] [--currency CHF] [--max-applications N|none] …
    close-month YYYY-MM

A price without --region is every region's that has none of its own. Every change is in the
audit trail (by "operator"): an organisation's in its own, prices in the platform's.
close-month prints {"invoices": [...], "failed": [...]}: an organisation whose invoice could
not be made is logged and listed, the others' are made all the same, and it exits 1."""
import argparse
import asyncio
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.db import make_engine, make_sessionmaker

from .db.billing import OrganisationBilling, Plan, PlanPrice, UsagePrice
from .db.models import AuditEvent, Organisation, PlanGroup, Region
from .domain.months import month_start, next_month
from .domain.usage import KINDS
from .services import invoices
from .settings import Settings

log = logging.getLogger(__name__)
OPERATOR = "operator"  # the audit trail's actor: the command has no user
QUOTAS = ("max_applications", "max_free_applications", "max_instances", "max_service_gb")
MAX_AMOUNT = Decimal(10) ** 9  # below what the columns hold (Numeric(12, 2), Numeric(14, 6))
CURRENCY = re.compile(r"[A-Z]{3}")


class Refused(ValueError):
    """What the operator asked for cannot be: said, and nothing changes."""


def _money(value: str, what: str, places: int) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise Refused(f"{what}: {value!r} is not a number") from None
    if not amount.is_finite() or not 0 <= amount < MAX_AMOUNT or amount != round(amount, places):
        raise Refused(f"{what}: {value!r} must be from 0, below {MAX_AMOUNT}, with at most {places} decimals")
    return amount


def _currency(value: str) -> str:
    if not CURRENCY.fullmatch(value):
        raise Refused(f"currency: {value!r} is not an ISO 4217 code (three capitals, e.g. EUR)")
    return value


async def _region_id(session: AsyncSession, slug: str | None) -> UUID | None:
    if slug is None:
        return None
    region_id = await session.scalar(select(Region.id).where(Region.slug == slug))
    if region_id is None:
        raise Refused(f"region: no region {slug!r}")
    return region_id


def _audit(session: AsyncSession, organisation_id: UUID | None, action: str, target_type: str, target_id: UUID | None,
           summary: str, changes: dict) -> None:
    session.add(AuditEvent(organisation_id=organisation_id, actor_id=None, actor_email=OPERATOR, action=action,
                           target_type=target_type, target_id=target_id, summary=summary,
                           changes={k: str(v) if isinstance(v, UUID | Decimal) else v for k, v in changes.items()}))


async def plans(session: AsyncSession) -> list[dict]:
    slugs = dict((await session.execute(select(Region.id, Region.slug))).all())
    prices: dict[UUID, list[dict]] = {}
    for price in (await session.execute(select(PlanPrice).order_by(PlanPrice.currency))).scalars():
        prices.setdefault(price.plan_id, []).append({"currency": price.currency, "monthly": str(price.monthly),
                                                     "region": slugs.get(price.region_id)})
    rows = (await session.execute(select(Plan, PlanGroup.name).join(PlanGroup, PlanGroup.id == Plan.plan_group_id)
                                  .order_by(PlanGroup.name, Plan.position))).all()
    return [{"id": str(plan.id), "plan_group": group, "name": plan.name, "position": plan.position,
             "is_free": plan.is_free, "memory_sizes_mb": plan.memory_sizes_mb, "max_instances": plan.max_instances,
             "included": plan.included, "prices": prices.get(plan.id, [])} for plan, group in rows]


async def set_plan_price(session: AsyncSession, plan_id: str, amount: str, currency: str,
                         region: str | None) -> dict:
    monthly = _money(amount, "amount", 2)
    try:
        plan = await session.get(Plan, UUID(plan_id))
    except ValueError:
        plan = None
    if plan is None:
        raise Refused(f"plan: no plan {plan_id!r} (regio billing plans lists them)")
    region_id = await _region_id(session, region)
    currency = _currency(currency)
    price = (await session.execute(select(PlanPrice).where(
        PlanPrice.plan_id == plan.id, PlanPrice.currency == currency,
        PlanPrice.region_id.is_(None) if region_id is None else PlanPrice.region_id == region_id))).scalar_one_or_none()
    if price is None:
        session.add(PlanPrice(plan_id=plan.id, region_id=region_id, currency=currency, monthly=monthly))
    else:
        price.monthly = monthly
    _audit(session, None, "plan_price.change", "plan", plan.id, f"{plan.name} costs {monthly} {currency} a month"
           f"{f' in {region}' if region else ''}", {"monthly": monthly, "currency": currency, "region": region})
    await session.flush()
    return next(p for p in await plans(session) if p["id"] == str(plan.id))


async def set_usage_price(session: AsyncSession, kind: str, unit_price: str, currency: str,
                          region: str | None) -> list[dict]:
    if kind not in KINDS:
        raise Refused(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    value = _money(unit_price, "price", 6)
    region_id = await _region_id(session, region)
    currency = _currency(currency)
    price = (await session.execute(select(UsagePrice).where(
        UsagePrice.kind == kind, UsagePrice.currency == currency,
        UsagePrice.region_id.is_(None) if region_id is None else UsagePrice.region_id == region_id))
    ).scalar_one_or_none()
    if price is None:
        session.add(UsagePrice(kind=kind, region_id=region_id, currency=currency, unit_price=value))
    else:
        price.unit_price = value
    _audit(session, None, "usage_price.change", "usage_price", None,
           f"{KINDS[kind].label} costs {value} {currency} per {KINDS[kind].billing_unit}"
           f"{f' in {region}' if region else ''}", {"kind": kind, "unit_price": value, "currency": currency,
                                                     "region": region})
    await session.flush()
    return await usage_prices(session)


async def usage_prices(session: AsyncSession) -> list[dict]:
    slugs = dict((await session.execute(select(Region.id, Region.slug))).all())
    return [{"kind": p.kind, "unit": KINDS[p.kind].billing_unit if p.kind in KINDS else None,
             "unit_price": str(p.unit_price), "currency": p.currency, "region": slugs.get(p.region_id)}
            for p in (await session.execute(select(UsagePrice).order_by(UsagePrice.kind, UsagePrice.currency)))
            .scalars()]


def _quota(name: str, value: str) -> int | Decimal | None:
    """"none" clears a quota."""
    if value.strip().lower() == "none":
        return None
    if name == "max_service_gb":
        return _money(value, name, 3)
    if not value.isdigit() or int(value) > 1_000_000:
        raise Refused(f"{name}: {value!r} is not a whole number from 0 to 1000000, nor none")
    return int(value)


async def _priced_currency(session: AsyncSession, value: str) -> str:
    """A currency some plan has a price in: in any other, every plan of the organisation's
    would cost 0 on its invoices without a word."""
    currency = _currency(value)
    priced = set((await session.execute(select(PlanPrice.currency).distinct())).scalars())
    if currency not in priced:
        raise Refused(f"currency: no plan has a price in {currency} (prices are in {', '.join(sorted(priced)) or 'none'}"
                      f"; set them first: regio billing plan-price PLAN_ID AMOUNT --currency {currency})")
    return currency


async def set_organisation(session: AsyncSession, organisation_id: str, *, tax_rate: str | None = None,
                           currency: str | None = None, **quotas: str | None) -> dict:
    """Quotas as given on the command line (a number, or "none"); None leaves one as it is."""
    try:
        organisation = await session.get(Organisation, UUID(organisation_id))
    except ValueError:
        organisation = None
    if organisation is None:
        raise Refused(f"organisation: no organisation {organisation_id!r}")
    changes: dict = {}
    if tax_rate is not None:
        changes["tax_rate"] = _money(tax_rate, "tax_rate", 4)
        if changes["tax_rate"] >= 1:
            raise Refused(f"tax_rate: {tax_rate!r} is a fraction (0.081 for 8.1 %), below 1")
    if currency is not None:
        changes["currency"] = None if currency.lower() == "none" else await _priced_currency(session, currency)
    for name in QUOTAS:
        if quotas.get(name) is not None:
            changes[name] = _quota(name, quotas[name])
    billing = await session.get(OrganisationBilling, organisation.id, with_for_update=True)
    if billing is None:
        billing = OrganisationBilling(organisation_id=organisation.id, tax_rate=Decimal(0))
        session.add(billing)
    for name, value in changes.items():
        setattr(billing, name, value)
    if changes:
        _audit(session, organisation.id, "billing_terms.change", "organisation", organisation.id,
               f"The operator changed {', '.join(changes)}", changes)
    await session.flush()
    await session.refresh(billing)  # as stored (0.0770), as the API shows it
    return {"organisation": str(organisation.id), "name": organisation.name, "currency": billing.currency,
            "tax_rate": str(billing.tax_rate),
            **{name: None if getattr(billing, name) is None else str(getattr(billing, name)) for name in QUOTAS}}


async def close_month(sessions, month: str, now: datetime, delay: timedelta, default_currency: str) -> dict:
    """Every organisation's invoice for the month (made now, or as made before); refused
    before the month's meters have had ``delay`` after its end to report. Each in a
    transaction of its own, as the control panel's loop does: one that fails is logged and
    listed under "failed", and keeps no other from its invoice."""
    try:
        start = month_start(month)
    except ValueError as e:
        raise Refused(str(e)) from None
    due = next_month(start) + delay
    if now < due:
        raise Refused(f"{month} can be closed from {due:%Y-%m-%d %H:%M} UTC (its meters report until then)")
    async with sessions() as session:
        organisations = await invoices.organisations_with_subscriptions(session, start)
    made, failed = [], []
    for organisation_id in organisations:
        try:
            async with sessions() as session, session.begin():
                invoice = await invoices.close_month(session, organisation_id, start, now,
                                                     default_currency=default_currency)
        except Exception as e:
            log.exception("closing %s for organisation %s failed", month, organisation_id)
            failed.append({"organisation": str(organisation_id),
                           "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]})
            continue
        if invoice is not None:
            made.append({"number": invoice.number, "organisation": str(organisation_id),
                         "currency": invoice.currency, "total": str(invoice.total)})
    return {"invoices": made, "failed": failed}


async def run(settings: Settings, args: argparse.Namespace, now: datetime | None = None):
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        if args.command == "close-month":
            return await close_month(sessions, args.month, now or datetime.now(UTC),
                                     timedelta(seconds=settings.invoice_delay_seconds), settings.billing_currency)
        async with sessions() as session, session.begin():
            if args.command == "plans":
                return {"plans": await plans(session), "usage_prices": await usage_prices(session)}
            if args.command == "plan-price":
                return await set_plan_price(session, args.plan, args.amount, args.currency or settings.billing_currency,
                                            args.region)
            if args.command == "usage-price":
                return await set_usage_price(session, args.kind, args.price, args.currency or settings.billing_currency,
                                             args.region)
            return await set_organisation(session, args.organisation, tax_rate=args.tax_rate, currency=args.currency,
                                          **{name: getattr(args, name) for name in QUOTAS})
    finally:
        await engine.dispose()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="regio billing")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("plans", help="the plans, their prices and the usage price list")
    price = commands.add_parser("plan-price", help="a plan's price per month")
    price.add_argument("plan")
    price.add_argument("amount")
    usage = commands.add_parser("usage-price", help="a usage kind's price per billing unit beyond what plans include")
    usage.add_argument("kind", help=", ".join(KINDS))
    usage.add_argument("price")
    for command in (price, usage):
        command.add_argument("--currency", help="ISO 4217; default: the platform's billing currency")
        command.add_argument("--region", help="a region's slug; default: every region without a price of its own")
    org = commands.add_parser("organisation", help="an organisation's currency, tax rate and quotas")
    org.add_argument("organisation")
    org.add_argument("--tax-rate", help="a fraction: 0.081 for 8.1 %%")
    org.add_argument("--currency", help='ISO 4217, or "none" for the platform\'s')
    for name in QUOTAS:
        org.add_argument(f"--{name.replace('_', '-')}", dest=name, help='a number, or "none" for no quota')
    close = commands.add_parser("close-month", help="make every organisation's invoice for a month")
    close.add_argument("month", help="YYYY-MM")
    return top


def main(argv: list[str] | None = None) -> None:
    top = parser()
    args = top.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = asyncio.run(run(Settings(), args))
    except Refused as e:
        top.exit(2, f"{e}\n")
    print(json.dumps(result, indent=2))
    if args.command == "close-month" and result["failed"]:
        # Said on stderr too: `regio billing` shows only that when the command fails.
        top.exit(1, f"{args.month}: no invoice made for {len(result['failed'])} organisations (a close-month "
                    f"again tries them): "
                    f"{', '.join(f['organisation'] for f in result['failed'])}\n")


if __name__ == "__main__":
    main()
