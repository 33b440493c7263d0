"""An invoice's lines and totals, calculated from what each subscription was in the period:
no database, no clock (services/invoices.py loads the terms and stores the result).

A subscription's price is prorated per second of a 30-day month and capped at the month's
price (as Heroku does); usage beyond what the plan includes (prorated the same way) is charged
at the price list's rate; every line's amount is rounded half-up to the cent, and the tax on
the subtotal the same way."""
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from .usage import KINDS

MONTH_SECONDS = Decimal(2_592_000)  # 30 days: the month a monthly price is for
MONTH_HOURS = Decimal(720)
CENT = Decimal("0.01")


def region_price(prices: Iterable[tuple[UUID | None, Decimal]], region_id: UUID, missing: Decimal) -> Decimal:
    """From (region, price) pairs of one thing in one currency: the region's own price, else
    the one for every region (region None), else ``missing``."""
    by_region = dict(prices)
    return by_region.get(region_id, by_region.get(None, missing))


def to_cent(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def seconds(delta: timedelta) -> Decimal:
    """Exact, to the microsecond (timedelta.total_seconds is a float)."""
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def overlap(started_at: datetime, ended_at: datetime | None, period_start: datetime,
            period_end: datetime) -> tuple[datetime, datetime] | None:
    """The part of [started_at, ended_at) (None: still open) inside the period; None if empty."""
    start = max(started_at, period_start)
    end = period_end if ended_at is None else min(ended_at, period_end)
    return (start, end) if end > start else None


@dataclass(frozen=True)
class Term:
    """One subscription as the invoice needs it. ``used``: the usage recorded in its overlap
    with the period, per kind, in the kind's billing unit; ``monthly`` and ``unit_prices``
    already chosen for the invoice's currency and the subscription's region."""

    application_id: UUID | None
    application_name: str
    plan_name: str
    is_free: bool
    started_at: datetime
    ended_at: datetime | None
    monthly: Decimal
    included: Mapping[str, Decimal] = field(default_factory=dict)
    used: Mapping[str, Decimal] = field(default_factory=dict)
    unit_prices: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Line:
    kind: str  # subscription, usage
    application_id: UUID | None
    application_name: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class Calculation:
    period_start: datetime
    period_end: datetime
    lines: list[Line]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


@dataclass
class _Stay:
    """An application's time on one plan at one price within the period: one subscription,
    or several (it left the plan and came back), added up before anything is rounded, so
    switching plans back and forth never rounds a fee away."""
    term: Term
    start: datetime
    end: datetime
    seconds: Decimal
    used: dict[str, Decimal]
    parts: int = 1


def _stays(terms: Sequence[Term], period_start: datetime, period_end: datetime) -> list[_Stay]:
    stays: dict[tuple, _Stay] = {}
    for term in sorted(terms, key=lambda t: (t.started_at, t.application_name)):
        part = overlap(term.started_at, term.ended_at, period_start, period_end)
        if part is None:
            continue
        key = (term.application_id, term.application_name, term.plan_name, term.is_free, term.monthly,
               tuple(sorted(term.included.items())), tuple(sorted(term.unit_prices.items())))
        stay = stays.get(key)
        if stay is None:
            stays[key] = _Stay(term, *part, seconds(part[1] - part[0]), dict(term.used))
            continue
        stay.end, stay.seconds, stay.parts = part[1], stay.seconds + seconds(part[1] - part[0]), stay.parts + 1
        for kind, used in term.used.items():
            stay.used[kind] = stay.used.get(kind, Decimal(0)) + used
    return list(stays.values())


def calculate(terms: Sequence[Term], period_start: datetime, period_end: datetime,
              tax_rate: Decimal) -> Calculation:
    lines: list[Line] = []
    for stay in _stays(terms, period_start, period_end):
        lines.append(_subscription_line(stay))
        if not stay.term.is_free:
            lines.extend(_usage_lines(stay))
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    tax = to_cent(subtotal * tax_rate)
    return Calculation(period_start, period_end, lines, subtotal, tax_rate, tax, subtotal + tax)


def _subscription_line(stay: _Stay) -> Line:
    term = stay.term
    amount = min(term.monthly, to_cent(term.monthly * stay.seconds / MONTH_SECONDS))
    spans = f" ({stay.parts} periods)" if stay.parts > 1 else ""
    return Line("subscription", term.application_id, term.application_name,
                f"{term.plan_name} plan, {_day(stay.start)} to {_day(stay.end)}{spans}", stay.seconds / Decimal(3600),
                "hours", term.monthly / MONTH_HOURS, amount, stay.start, stay.end)


def _usage_lines(stay: _Stay) -> list[Line]:
    term, start, end = stay.term, stay.start, stay.end
    lines = []
    share = min(Decimal(1), stay.seconds / MONTH_SECONDS)
    for kind in KINDS.values():
        used = stay.used.get(kind.name, Decimal(0))
        allowance = Decimal(str(term.included.get(kind.name, 0))) * share  # JSON: may be a float
        beyond = max(Decimal(0), used - allowance)
        if beyond <= 0:
            continue
        unit_price = term.unit_prices.get(kind.name, Decimal(0))
        lines.append(Line("usage", term.application_id, term.application_name,
                          f"{kind.label} beyond the {term.plan_name} plan's {_figure(allowance)} {kind.billing_unit}"
                          f" ({_figure(used)} used)", beyond, kind.billing_unit, unit_price,
                          to_cent(beyond * unit_price), start, end))
    return lines


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def _figure(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.001'), rounding=ROUND_HALF_UP).normalize():f}"
