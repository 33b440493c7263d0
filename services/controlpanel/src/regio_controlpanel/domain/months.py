"""Calendar months in UTC, as invoices and usage totals count them: [first instant, next's)."""
from datetime import UTC, datetime


def month_start(value: str) -> datetime:
    """``YYYY-MM`` -> the month's first instant, UTC. ValueError when it is not one."""
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise ValueError(f"{value!r} is not a month (YYYY-MM)") from None
    return parsed.replace(tzinfo=UTC)


def month_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def previous_month(start: datetime) -> datetime:
    return start.replace(year=start.year - 1, month=12) if start.month == 1 else start.replace(month=start.month - 1)
