"""Invoices: an organisation's month closed once into an invoice (lines and totals that never
change after), the running month's estimate, and the loop that closes each month once its
meters have reported (``invoice_delay_seconds`` after its end).

What an invoice is made from: every subscription of the organisation that overlaps the month
(those of deleted applications too: they ran), each plan's price and the usage price list in
the organisation's currency for the subscription's region, and the usage events of each
application whose period began inside its subscription (domain/invoicing.py calculates)."""
import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.billing import (
    Invoice,
    InvoiceLine,
    OrganisationBilling,
    Plan,
    PlanPrice,
    Subscription,
    UsageEvent,
    UsagePrice,
)
from ..db.models import Organisation
from ..domain.errors import NotFound
from ..domain.invoicing import Calculation, Term, calculate, overlap, region_price
from ..domain.months import month_of, next_month, previous_month
from ..domain.usage import KINDS
from ..settings import Settings
from .access import Action, Caller

log = logging.getLogger(__name__)

# pg_advisory_xact_lock's first key for closing a month ("inv"); the second is the
# organisation and month's hash: two closers of the same month wait for each other, so the
# second finds the first's invoice and no number is drawn in vain.
CLOSING_LOCK = 0x696E76


class NotClosable(ValueError):
    """A month that has not ended cannot be invoiced."""


@dataclass(frozen=True)
class Terms:
    """What an organisation's invoice is calculated in."""
    currency: str
    tax_rate: Decimal
    billing_details: dict


async def terms_of(session: AsyncSession, organisation_id: UUID, default_currency: str) -> Terms:
    billing = await session.get(OrganisationBilling, organisation_id)
    name = await session.scalar(select(Organisation.name).where(Organisation.id == organisation_id))
    details = {"organisation": name or "", "company_name": "", "address": "", "email": "", "vat_id": ""}
    if billing is None:
        return Terms(default_currency, Decimal(0), details)
    details |= {"company_name": billing.company_name, "address": billing.address, "email": billing.email,
                "vat_id": billing.vat_id}
    return Terms(billing.currency or default_currency, billing.tax_rate, details)


def _overlapping(organisation_id: UUID, start: datetime, end: datetime):
    return (Subscription.organisation_id == organisation_id, Subscription.started_at < end,
            or_(Subscription.ended_at.is_(None), Subscription.ended_at > start))


def _priced(rows, region_id: UUID) -> Decimal:
    """The region's own price, else the one for every region, else nothing (0)."""
    return region_price(((r.region_id, r.price) for r in rows), region_id, Decimal(0))


async def _subscription_terms(session: AsyncSession, organisation_id: UUID, start: datetime, end: datetime,
                              currency: str) -> list[Term]:
    subscriptions = (await session.execute(
        select(Subscription, Plan).join(Plan, Plan.id == Subscription.plan_id)
        .where(*_overlapping(organisation_id, start, end)).order_by(Subscription.started_at))).all()
    if not subscriptions:
        return []
    plan_prices = defaultdict(list)
    for row in (await session.execute(
            select(PlanPrice.plan_id, PlanPrice.region_id, PlanPrice.monthly.label("price"))
            .where(PlanPrice.currency == currency, PlanPrice.plan_id.in_({p.id for _, p in subscriptions})))).all():
        plan_prices[row.plan_id].append(row)
    usage_prices = defaultdict(list)
    for row in (await session.execute(
            select(UsagePrice.kind, UsagePrice.region_id, UsagePrice.unit_price.label("price"))
            .where(UsagePrice.currency == currency))).all():
        usage_prices[row.kind].append(row)
    terms = []
    for subscription, plan in subscriptions:
        part = overlap(subscription.started_at, subscription.ended_at, start, end)
        if part is None:
            continue
        used = await _usage_in(session, organisation_id, subscription.application_id, *part) if not plan.is_free else {}
        terms.append(Term(
            application_id=subscription.application_id, application_name=subscription.application_name,
            plan_name=plan.name, is_free=plan.is_free, started_at=subscription.started_at,
            ended_at=subscription.ended_at, monthly=_priced(plan_prices[plan.id], subscription.region_id),
            included={k: Decimal(str(v)) for k, v in (plan.included or {}).items()}, used=used,
            unit_prices={kind: _priced(usage_prices[kind], subscription.region_id) for kind in KINDS}))
    return terms


async def _usage_in(session: AsyncSession, organisation_id: UUID, application_id: UUID, start: datetime,
                    end: datetime) -> dict[str, Decimal]:
    """The application's usage whose period began in [start, end), per kind in billing units."""
    rows = (await session.execute(
        select(UsageEvent.kind, UsageEvent.memory_mb, func.sum(UsageEvent.quantity))
        .where(UsageEvent.organisation_id == organisation_id, UsageEvent.application_id == application_id,
               UsageEvent.period_start >= start, UsageEvent.period_start < end)
        .group_by(UsageEvent.kind, UsageEvent.memory_mb))).all()
    used: dict[str, Decimal] = defaultdict(Decimal)
    for kind, memory_mb, recorded in rows:
        if kind in KINDS:
            used[kind] += KINDS[kind].billed_quantity(recorded, memory_mb)
    return dict(used)


async def calculate_period(session: AsyncSession, organisation_id: UUID, start: datetime, end: datetime,
                           terms: Terms) -> Calculation:
    found = await _subscription_terms(session, organisation_id, start, end, terms.currency)
    return calculate(found, start, end, terms.tax_rate)


async def estimate(session: AsyncSession, organisation_id: UUID, now: datetime,
                   default_currency: str) -> tuple[Calculation, Terms]:
    """The running month so far, [its start, now): what its invoice would say today. Not stored."""
    terms = await terms_of(session, organisation_id, default_currency)
    return await calculate_period(session, organisation_id, month_of(now), now, terms), terms


async def find(session: AsyncSession, organisation_id: UUID, start: datetime) -> Invoice | None:
    return (await session.execute(select(Invoice).where(Invoice.organisation_id == organisation_id,
                                                        Invoice.period_start == start))).scalar_one_or_none()


async def close_month(session: AsyncSession, organisation_id: UUID, start: datetime, now: datetime, *,
                      default_currency: str) -> Invoice | None:
    """The organisation's invoice for the month beginning ``start``: made now if it was not
    already (then the one made before is returned), None when no subscription of the
    organisation overlaps the month. NotClosable before the month has ended."""
    start = month_of(start)
    end = next_month(start)
    if now < end:
        raise NotClosable(f"{start:%Y-%m} has not ended")
    await session.execute(select(func.pg_advisory_xact_lock(CLOSING_LOCK, func.hashtext(
        f"{organisation_id}:{start:%Y-%m}"))))
    if (existing := await find(session, organisation_id, start)) is not None:
        return existing
    terms = await terms_of(session, organisation_id, default_currency)
    result = await calculate_period(session, organisation_id, start, end, terms)
    if not result.lines:
        return None
    number = await session.scalar(text("SELECT nextval('controlpanel.invoice_numbers')"))
    invoice = Invoice(number=f"R-{start:%Y%m}-{number:06d}", organisation_id=organisation_id, period_start=start,
                      period_end=end, currency=terms.currency, subtotal=result.subtotal, tax_rate=result.tax_rate,
                      tax=result.tax, total=result.total, billing_details=terms.billing_details, issued_at=now)
    session.add(invoice)
    await session.flush()
    session.add_all(InvoiceLine(
        invoice_id=invoice.id, position=position, kind=line.kind, application_id=line.application_id,
        application_name=line.application_name, description=line.description,
        quantity=line.quantity.quantize(Decimal("0.000001")), unit=line.unit,
        unit_price=line.unit_price.quantize(Decimal("0.000001")), amount=line.amount,
        period_start=line.period_start, period_end=line.period_end) for position, line in enumerate(result.lines))
    await session.flush()
    log.info("invoice %s made for organisation %s, %s: %s %s", invoice.number, organisation_id, f"{start:%Y-%m}",
             invoice.total, invoice.currency)
    return invoice


async def readable(session: AsyncSession, caller: Caller, invoice_id: UUID) -> Invoice:
    """The invoice, for a caller who may see the organisation's bills: another organisation's
    is not found (404), a member without billing is refused (403)."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or not caller.can_see(invoice.organisation_id):
        raise NotFound()
    caller.require_organisation(invoice.organisation_id, Action.BILLING)
    return invoice


async def printable(session: AsyncSession, invoice: Invoice, settings: Settings) -> dict:
    """What the printed invoice shows (web/templates/invoice_print.html)."""
    return {"invoice": invoice, "lines": await lines_of(session, invoice.id), "details": invoice.billing_details,
            "seller": settings.billing_seller,
            "seller_address": [line for line in settings.billing_seller_address.splitlines() if line.strip()]}


async def lines_of(session: AsyncSession, invoice_id: UUID) -> list[InvoiceLine]:
    return list((await session.execute(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
                                       .order_by(InvoiceLine.position))).scalars())


async def organisations_with_subscriptions(session: AsyncSession, start: datetime,
                                           uninvoiced: bool = False) -> list[UUID]:
    """Organisations (still there) with a subscription in the month beginning ``start``;
    ``uninvoiced``: only those with no invoice for it yet."""
    end = next_month(start)
    query = (select(Subscription.organisation_id).distinct()
             .join(Organisation, Organisation.id == Subscription.organisation_id)
             .where(Subscription.started_at < end,
                    or_(Subscription.ended_at.is_(None), Subscription.ended_at > start)))
    if uninvoiced:
        query = query.where(Subscription.organisation_id.not_in(
            select(Invoice.organisation_id).where(Invoice.period_start == start)))
    return list((await session.execute(query)).scalars())


def closable_month(now: datetime, delay: timedelta) -> datetime:
    """The last month whose invoices are due at ``now``: it ended at least ``delay`` ago."""
    return previous_month(month_of(now - delay))


CATCH_UP_MONTHS = 3  # a month whose close failed (or the platform was down) is tried this long


async def close_due(sessions: async_sessionmaker[AsyncSession], now: datetime, delay: timedelta,
                    default_currency: str) -> list[Invoice]:
    """Closes every due month of the last few, oldest first, for every organisation that has
    none for it; each in a transaction of its own, so one that fails keeps no other from its
    invoice, and is tried again in the next round (not only while its month is the last)."""
    made = []
    start = closable_month(now, delay)
    for _ in range(CATCH_UP_MONTHS - 1):
        start = previous_month(start)
    for _ in range(CATCH_UP_MONTHS):
        made += await _close_month_for_all(sessions, start, now, default_currency)
        start = next_month(start)
    return made


async def _close_month_for_all(sessions: async_sessionmaker[AsyncSession], start: datetime, now: datetime,
                               default_currency: str) -> list[Invoice]:
    async with sessions() as session:
        organisations = await organisations_with_subscriptions(session, start, uninvoiced=True)
    made = []
    for organisation_id in organisations:
        try:
            async with sessions() as session, session.begin():
                invoice = await close_month(session, organisation_id, start, now, default_currency=default_currency)
            if invoice is not None:
                made.append(invoice)
        except Exception:
            log.exception("closing %s for organisation %s failed; tried again in the next round",
                          f"{start:%Y-%m}", organisation_id)
    return made


class MonthCloser:
    """The control panel's loop that makes each month's invoices once they are due."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], now: Callable[[], datetime], delay_seconds: float,
                 interval_seconds: float, default_currency: str):
        """``now``: the billing clock's time, asked every round (a test sets the app's clock)."""
        self.sessions = sessions
        self.now = now
        self.delay = timedelta(seconds=delay_seconds)
        self.interval_seconds = interval_seconds
        self.default_currency = default_currency

    async def run(self) -> None:
        while True:
            await close_due(self.sessions, self.now(), self.delay, self.default_currency)
            await asyncio.sleep(self.interval_seconds)
