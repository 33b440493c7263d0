"""The usage ledger: its events for a billing system to follow (a cursor, never a page that
shifts under it), and an application's month of usage per kind. An organisation's owners,
admins and billing members read all of its usage; who views an application, that
application's; another organisation's is never listed."""
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated
from uuid import UUID

from fastapi import Query

from ...db.models import Application
from ...domain.errors import ApiError, NotFound
from ...services import usage as service
from ..deps import CallerDep, SessionDep
from ..routing import Router
from ..usage_schemas import ApplicationUsageOut, UsageEventOut, UsageEventsOut, UsageOfKind

router = Router(prefix="/billing/v3", tags=["billing"])

MAX_EVENTS = 1000
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
SHOWN = Decimal("0.000001")  # what UsageEvent.quantity keeps


def _decimal(value: Decimal) -> str:
    return str(value.quantize(SHOWN, rounding=ROUND_HALF_UP))


def event_out(event) -> UsageEventOut:
    return UsageEventOut(
        id=event.id, key=event.key, organisation=event.organisation_id, application=event.application_id,
        environment=event.environment_id, service_instance=event.service_instance_id, region=event.region_id,
        kind=event.kind, memory_mb=event.memory_mb, quantity=_decimal(event.quantity), unit=event.unit,
        period_start=event.period_start, period_end=event.period_end, recorded_at=event.recorded_at)


@router.get("/usage-events/", response_model=UsageEventsOut)
async def list_usage_events(
    session: SessionDep, caller: CallerDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Only events after this id (`next_after`).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
    organisation: UUID | None = None, application: UUID | None = None, environment: UUID | None = None,
) -> UsageEventsOut:
    """The events after ``after`` in id order. Every event is added with a higher id than any
    listed before it, so a follower that passes back ``next_after`` sees each one once."""
    events = await service.events_after(session, caller, after, limit, organisation_id=organisation,
                                        application_id=application, environment_id=environment)
    return UsageEventsOut(results=[event_out(e) for e in events], next_after=events[-1].id if events else after)


@router.get("/usage/", response_model=ApplicationUsageOut)
async def application_usage(
    session: SessionDep, caller: CallerDep,
    application: Annotated[UUID, Query(description="The application whose usage is asked for.")],
    period: Annotated[str, Query(max_length=7, description="A calendar month in UTC: YYYY-MM.")],
) -> ApplicationUsageOut:
    """The application's usage in the month, per kind, as measured and as billed."""
    if not PERIOD.match(period):
        raise ApiError("A month is written YYYY-MM (e.g. 2026-11).", "period")
    app = await session.get(Application, application)
    if app is None or not service.may_read_usage(caller, app):
        raise NotFound()
    start, end = service.month(period)
    sums = await service.application_usage(session, app.id, start, end)
    kinds = service.KINDS
    return ApplicationUsageOut(
        application=app.id, period=period, period_start=start, period_end=end,
        usage=[UsageOfKind(kind=s.kind, label=kinds[s.kind].label, quantity=_decimal(s.quantity),
                           unit=kinds[s.kind].recorded_unit, billed_quantity=_decimal(s.billed),
                           billing_unit=kinds[s.kind].billing_unit) for s in sums])
