"""The usage ledger: what the regions' meters (and the control panel's storage sampler)
measured, recorded once each, in an order an external billing system can follow.

The ledger's cursor is the row id. A sequence hands ids out in the order transactions ask,
not the order they commit, so a follower reading ``id > n`` could pass a row still being
written and never see it. Every insert therefore takes one transaction-scoped advisory lock
first, held until its transaction ends: rows commit one at a time in id order, and a row a
follower has not seen always has a higher id than every row it has.

A region's meters are believed only about what ran in that region: an environment whose
application is there, or is migrating to or from it (until the migration ended and its grace
period is over, for usage that began before then). Others can write to a region's stream (its
operator, a dedicated region's owner): a meter reporting another region's tenant is dropped."""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.billing import DeletedEnvironment, UsageEvent
from ..db.models import Application, Environment, Migration, Region
from ..domain.migrations import FINAL
from ..domain.months import month_start, next_month
from ..domain.usage import KINDS
from .access import Action, Caller

log = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for the ledger's inserts ("usage" in ASCII): one per database.
LEDGER_LOCK = 0x7573616765
# What fits in UsageEvent.quantity (Numeric(24, 6)) with room: a meter's figure above it is a lie.
MAX_QUANTITY = Decimal(10) ** 15


class UsageRefused(ValueError):
    """A measurement that cannot be true (a negative or absurd quantity, an unknown kind)."""


async def record_usage(session: AsyncSession, *, key: str, organisation_id: UUID, application_id: UUID,
                       environment_id: UUID | None, service_instance_id: UUID | None, region_id: UUID,
                       kind: str, memory_mb: int | None, quantity: Decimal, unit: str,
                       period_start: datetime, period_end: datetime) -> bool:
    """Records one measurement unless one with the same ``key`` is already recorded; returns
    whether it was new. Call it last in a transaction: the ledger's lock is held until commit."""
    usage_kind = KINDS.get(kind)
    if usage_kind is None or unit != usage_kind.recorded_unit:
        raise UsageRefused(f"usage of kind {kind!r} in {unit!r}: not a kind and its recorded unit")
    quantity = Decimal(quantity)
    if not (0 <= quantity < MAX_QUANTITY) or period_end < period_start:
        raise UsageRefused(f"usage {key}: quantity {quantity} over [{period_start}, {period_end}] cannot be")
    await session.execute(select(func.pg_advisory_xact_lock(LEDGER_LOCK)))
    inserted = await session.execute(
        pg_insert(UsageEvent).values(
            key=key, organisation_id=organisation_id, application_id=application_id, environment_id=environment_id,
            service_instance_id=service_instance_id, region_id=region_id, kind=kind, memory_mb=memory_mb,
            quantity=quantity, unit=unit, period_start=period_start, period_end=period_end)
        .on_conflict_do_nothing(index_elements=[UsageEvent.key]).returning(UsageEvent.id))
    return inserted.first() is not None


@dataclass(frozen=True)
class Metered:
    """What a region's measurement of an environment is recorded against."""
    organisation_id: UUID
    application_id: UUID
    environment_id: UUID
    region_id: UUID  # the measuring region's, whose prices apply


async def metered_in(session: AsyncSession, region: str, environment_id: UUID, at: datetime) -> Metered | None:
    """The environment as region ``region`` may report its usage beginning ``at``; None when
    the environment is gone (deleted since) or is not that region's to report."""
    row = (await session.execute(
        select(Application.id, Application.organisation_id, Application.region_id)
        .join(Environment, Environment.application_id == Application.id)
        .where(Environment.id == environment_id))).first()
    region_id = await session.scalar(select(Region.id).where(Region.slug == region))
    if region_id is None:
        return None
    if row is None:
        return await _deleted(session, region_id, environment_id, at)
    metered = Metered(row.organisation_id, row.id, environment_id, region_id)
    if row.region_id == region_id:
        return metered
    # A migration's source ran it until the cut-over (and forwards it during the grace); its
    # target ran its deployments from the migration's start. Usage that began before the
    # migration ended (or its grace did) is theirs to report, however late it arrives.
    until = or_(Migration.status.not_in([str(s) for s in FINAL]), Migration.ended_at > at, Migration.grace_until > at)
    migrating = await session.scalar(
        select(Migration.id).where(
            Migration.application_id == row.id, until,
            or_(Migration.source_region_id == region_id,
                and_(Migration.target_region_id == region_id, Migration.created_at <= at))).limit(1))
    return metered if migrating is not None else None


# Containers stop within seconds of their environment's deletion; their last run is cut at
# a period's end that may fall in between. Usage that began later than this after is not theirs.
STOPPING_GRACE = timedelta(minutes=10)


def remember_deleted(session: AsyncSession, app: Application, envs: list[Environment]) -> None:
    """Called as environments are deleted: their meters' last reports still find who pays."""
    session.add_all(DeletedEnvironment(environment_id=env.id, application_id=app.id,
                                       organisation_id=app.organisation_id, region_id=app.region_id)
                    for env in envs)


async def _deleted(session: AsyncSession, region_id: UUID, environment_id: UUID, at: datetime) -> Metered | None:
    gone = await session.get(DeletedEnvironment, environment_id)
    if gone is None or gone.region_id != region_id or at > gone.deleted_at + STOPPING_GRACE:
        return None
    return Metered(gone.organisation_id, gone.application_id, environment_id, region_id)


# --- reading the ledger ---------------------------------------------------------------------

def visible_to(caller: Caller) -> ColumnElement[bool]:
    """A WHERE clause over UsageEvent: a whole organisation's events for who may bill it or
    view all of it; a narrowed role's, its applications' and environments' only."""
    organisations, narrowed = set(), []
    for organisation, grant in caller.grants.items():
        if not grant.scoped and (grant.allows(Action.BILLING) or grant.allows(Action.VIEW)):
            organisations.add(organisation)
        elif grant.scoped and grant.allows(Action.VIEW):
            # Within the organisation's own events: an id names nothing of another's.
            narrowed.append(and_(UsageEvent.organisation_id == organisation,
                                 or_(UsageEvent.application_id.in_(grant.applications),
                                     UsageEvent.environment_id.in_(set(grant.environments)))))
    return or_(false(), UsageEvent.organisation_id.in_(organisations), *narrowed)


async def events_after(session: AsyncSession, caller: Caller, after: int, limit: int, *,
                       organisation_id: UUID | None = None, application_id: UUID | None = None,
                       environment_id: UUID | None = None) -> list[UsageEvent]:
    """The caller's events with ids above ``after``, in id order (the filters narrow them)."""
    query = select(UsageEvent).where(UsageEvent.id > after, visible_to(caller))
    if organisation_id is not None:
        query = query.where(UsageEvent.organisation_id == organisation_id)
    if application_id is not None:
        query = query.where(UsageEvent.application_id == application_id)
    if environment_id is not None:
        query = query.where(UsageEvent.environment_id == environment_id)
    return list((await session.execute(query.order_by(UsageEvent.id).limit(limit))).scalars())


def may_read_usage(caller: Caller, app: Application) -> bool:
    """Who may bill the application's organisation, or view all of the application (a role
    narrowed to some of its environments sees their events, not the application's totals)."""
    grant = caller.grants.get(app.organisation_id)
    if grant is None:
        return False
    if not grant.scoped:
        return grant.allows(Action.BILLING) or grant.allows(Action.VIEW)
    return grant.allows(Action.VIEW) and app.id in grant.applications


def month(period: str) -> tuple[datetime, datetime]:
    """``YYYY-MM``'s calendar month in UTC, [start, end)."""
    start = month_start(period)
    return start, next_month(start)


@dataclass(frozen=True)
class UsageSum:
    kind: str
    quantity: Decimal  # recorded unit
    billed: Decimal  # billing unit


async def application_usage(session: AsyncSession, application_id: UUID, start: datetime,
                            end: datetime) -> list[UsageSum]:
    """Every kind's usage by the application whose measurement began in [start, end)."""
    rows = (await session.execute(
        select(UsageEvent.kind, UsageEvent.memory_mb, func.sum(UsageEvent.quantity))
        .where(UsageEvent.application_id == application_id, UsageEvent.period_start >= start,
               UsageEvent.period_start < end)
        .group_by(UsageEvent.kind, UsageEvent.memory_mb))).all()
    sums = []
    for kind in KINDS.values():
        mine = [(memory_mb, quantity) for name, memory_mb, quantity in rows if name == kind.name]
        sums.append(UsageSum(kind.name, sum((q for _, q in mine), Decimal(0)),
                             sum((kind.billed_quantity(q, m) for m, q in mine), Decimal(0))))
    return sums
