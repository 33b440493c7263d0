"""The invoice calculation (domain/invoicing.py) against figures worked out by hand."""
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from regio_controlpanel.domain.invoicing import Term, calculate

NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
DEC = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))  # 31 days
STARTER = {"instance": 1440, "database_storage": 3600, "bucket_storage": 7200, "requests": 5,
           "bytes_served": 50, "build": 500}
PRICES = {"instance": Decimal("0.012"), "requests": Decimal("0.40"), "build": Decimal("0.01")}


def term(start: datetime, end: datetime | None, monthly: str, *, plan: str = "Starter", free: bool = False,
         used: dict | None = None, included: dict | None = None) -> Term:
    return Term(uuid.uuid4(), "Shop", plan, free, start, end, Decimal(monthly), included or STARTER,
                {k: Decimal(v) for k, v in (used or {}).items()}, PRICES)


def test_a_whole_31_day_month_costs_the_month_s_price_not_more():
    # 31 days = 2,678,400 s; 25.00 × 2,678,400 / 2,592,000 = 25.83, capped at 25.00.
    # 744 hours at 25.00 / 720 = 0.034722… an hour.
    result = calculate([term(datetime(2026, 10, 3, tzinfo=UTC), None, "25.00")], *DEC, Decimal("0.081"))
    [line] = result.lines
    assert (line.amount, line.quantity, line.unit) == (Decimal("25.00"), Decimal(744), "hours")
    assert line.unit_price.quantize(Decimal("0.000001")) == Decimal("0.034722")
    assert (line.period_start, line.period_end) == DEC
    # Tax 25.00 × 0.081 = 2.025 -> 2.03 (half-up); total 27.03.
    assert (result.subtotal, result.tax, result.total) == (Decimal("25.00"), Decimal("2.03"), Decimal("27.03"))


def test_part_of_a_month_is_prorated_per_second_and_rounded_half_up():
    # Starter 2026-11-10 12:00 to 11-20 00:00: 9.5 days = 820,800 s; 25.00 × 820,800 / 2,592,000
    # = 7.9166… -> 7.92. Business 11-20 00:00 to 11-25 06:00: 5.25 days = 453,600 s;
    # 99.00 × 453,600 / 2,592,000 = 17.325 exactly -> 17.33 (half-up; half-even would say 17.32).
    upgrade = datetime(2026, 11, 20, tzinfo=UTC)
    result = calculate([term(datetime(2026, 11, 10, 12, tzinfo=UTC), upgrade, "25.00"),
                        term(upgrade, datetime(2026, 11, 25, 6, tzinfo=UTC), "99.00", plan="Business")],
                       *NOV, Decimal(0))
    assert [(line.description.split(",")[0], line.amount, line.quantity) for line in result.lines] == [
        ("Starter plan", Decimal("7.92"), Decimal(228)), ("Business plan", Decimal("17.33"), Decimal(126))]
    assert (result.subtotal, result.tax, result.total) == (Decimal("25.25"), Decimal("0.00"), Decimal("25.25"))


def test_usage_beyond_the_prorated_allowance_is_charged_and_within_it_is_not():
    # 9.5 days: share 820,800 / 2,592,000 = 0.31666…
    # instance: allowance 1440 × 0.31666… = 456 GB-hours; 114 used: no line.
    # requests: allowance 5 × 0.31666… = 1.58333… million; 3 used: 1.41666… beyond × 0.40
    #   = 0.56666… -> 0.57.
    # build: allowance 500 × 0.31666… = 158.333… minutes; 1000 used: 841.666… beyond × 0.01
    #   = 8.41666… -> 8.42.
    # bytes_served: 60 GB used, allowance 15.8333…, no price in the list: a line of 0.00.
    result = calculate([term(datetime(2026, 11, 10, 12, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC), "25.00",
                             used={"instance": 114, "requests": 3, "build": 1000, "bytes_served": 60})],
                       *NOV, Decimal("0.2"))
    subscription, *usage = result.lines
    assert subscription.amount == Decimal("7.92")
    assert [(line.kind, line.unit, line.amount) for line in usage] == [
        ("usage", "million requests", Decimal("0.57")), ("usage", "GB", Decimal("0.00")),
        ("usage", "minute", Decimal("8.42"))]
    assert usage[0].quantity.quantize(Decimal("0.000001")) == Decimal("1.416667")
    assert usage[0].unit_price == Decimal("0.40")
    # 7.92 + 0.57 + 0.00 + 8.42 = 16.91; tax 3.382 -> 3.38; total 20.29.
    assert (result.subtotal, result.tax, result.total) == (Decimal("16.91"), Decimal("3.38"), Decimal("20.29"))


def test_a_free_plan_has_no_usage_lines_whatever_it_used():
    result = calculate([term(*NOV, "0.00", plan="Developer", free=True, included={"requests": 1},
                             used={"requests": 500, "instance": 10_000})], *NOV, Decimal("0.081"))
    [line] = result.lines
    assert (line.kind, line.amount, line.quantity) == ("subscription", Decimal("0.00"), Decimal(720))
    assert result.total == Decimal("0.00")


def test_subscriptions_outside_the_period_are_not_invoiced():
    before = term(datetime(2026, 10, 1, tzinfo=UTC), NOV[0], "25.00")  # ended as November began
    after = term(NOV[1], None, "25.00")
    assert calculate([before, after], *NOV, Decimal(0)).lines == []


# The rule these document: a subscription costs its monthly price × the seconds it covers /
# 2,592,000 (a 30-day month), capped at the monthly price; its allowance is what the plan
# includes × the same share, capped at 1. So a whole February costs less than a whole month,
# and a whole 31-day month costs the month's price, not more.
FEB = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))  # 28 days
LEAP_FEB = (datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))  # 29 days
JAN = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))  # 31 days


def test_a_whole_february_on_starter_costs_28_or_29_thirtieths_of_the_month():
    # 28 days = 2,419,200 s: 25.00 × 2,419,200 / 2,592,000 = 23.333… -> 23.33, over 672 hours.
    # Requests: allowance 5 × 28/30 = 4.666… million; 5 used: 0.333… beyond × 0.40 = 0.1333… -> 0.13.
    # Subtotal 23.46; tax 0.081 × 23.46 = 1.90026 -> 1.90; total 25.36.
    result = calculate([term(datetime(2026, 1, 20, tzinfo=UTC), None, "25.00", used={"requests": 5})], *FEB,
                       Decimal("0.081"))
    subscription, requests = result.lines
    assert (subscription.amount, subscription.quantity) == (Decimal("23.33"), Decimal(672))
    assert (requests.unit, requests.amount) == ("million requests", Decimal("0.13"))
    assert requests.quantity.quantize(Decimal("0.000001")) == Decimal("0.333333")
    assert (result.subtotal, result.tax, result.total) == (Decimal("23.46"), Decimal("1.90"), Decimal("25.36"))

    # A leap year's: 29 days = 2,505,600 s: 25.00 × 2,505,600 / 2,592,000 = 24.1666… -> 24.17, 696 hours.
    [leap] = calculate([term(*LEAP_FEB, "25.00")], *LEAP_FEB, Decimal(0)).lines
    assert (leap.amount, leap.quantity) == (Decimal("24.17"), Decimal(696))


def test_a_31_day_month_covered_whole_costs_the_month_s_price_and_includes_the_month_s_allowance():
    # Covered from before the month to after it: 2,678,400 s, share 31/30 capped at 1.
    # Business: 99.00 × 31/30 = 102.30, capped at 99.00.
    # Requests: allowance 5 × 1 = 5 million (not 5.1666…); 5.5 used: 0.5 beyond × 0.40 = 0.20.
    # Subtotal 99.20; tax 0.2 -> 19.84; total 119.04.
    result = calculate([term(datetime(2026, 12, 15, tzinfo=UTC), datetime(2027, 2, 10, tzinfo=UTC), "99.00",
                             plan="Business", used={"requests": "5.5"})], *JAN, Decimal("0.2"))
    subscription, requests = result.lines
    assert (subscription.amount, subscription.quantity) == (Decimal("99.00"), Decimal(744))
    assert (requests.quantity, requests.amount) == (Decimal("0.5"), Decimal("0.20"))
    assert (result.subtotal, result.tax, result.total) == (Decimal("99.20"), Decimal("19.84"), Decimal("119.04"))

    # 30.25 days of it (01-01 12:00 to 01-31 18:00) is past 30 days too: capped at 99.00, 726 hours.
    [part] = calculate([term(datetime(2027, 1, 1, 12, tzinfo=UTC), datetime(2027, 1, 31, 18, tzinfo=UTC), "99.00",
                             plan="Business")], *JAN, Decimal(0)).lines
    assert (part.amount, part.quantity) == (Decimal("99.00"), Decimal(726))
