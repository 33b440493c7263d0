"""An application that leaves a plan and comes back within a month is billed for its whole
time on the plan as one line, rounded once: switching plans every two minutes (each stay's
fee alone rounds to 0.00) does not make the plans free."""
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from regio_controlpanel.domain.invoicing import Term, calculate

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def test_switching_plans_back_and_forth_is_billed_per_plan_not_rounded_away():
    app = uuid.uuid4()
    start = datetime(2026, 11, 5, tzinfo=UTC)
    terms = []
    for i in range(20):  # 10 stays of 120 s on each plan, alternating
        starter = i % 2 == 0
        at = start + timedelta(seconds=120 * i)
        terms.append(Term(application_id=app, application_name="Flip", plan_name="Starter" if starter else "Business",
                          is_free=False, started_at=at, ended_at=at + timedelta(seconds=120),
                          monthly=Decimal("25.00") if starter else Decimal("99.00")))
    invoice = calculate(terms, *NOVEMBER, Decimal(0))
    # Starter: 25.00 × 1200 s / 2,592,000 s = 0.01157… → 0.01; Business: 99.00 × 1200 / 2,592,000 = 0.0458… → 0.05.
    # Alone, each 120 s stay is 0.00116 (Starter) or 0.00458 (Business): 0.00 each.
    assert [(line.description.split(",")[0], line.quantity, line.amount) for line in invoice.lines] == [
        ("Starter plan", Decimal(1200) / 3600, Decimal("0.01")), ("Business plan", Decimal(1200) / 3600, Decimal("0.05"))]
    assert invoice.total == Decimal("0.06")
    assert invoice.lines[0].description.endswith("(10 periods)")
