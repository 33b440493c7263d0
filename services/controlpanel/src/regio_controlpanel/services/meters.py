"""The regions' meters' messages, recorded in the usage ledger (services/usage.py): a runner
agent's instance segments, an ingress's traffic per period, a builder's build time.

Each is recorded under a key naming what measured it and when, so a message delivered again,
or sent again by a meter that restarted, is recorded once. One that cannot be recorded (its
environment deleted since, another region's, or figures that cannot be true) is dropped with
a warning: retried, it would hold up every later measurement of the region."""
import logging
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import BuildFinished, InstanceUsageMetered, Message, TrafficMetered
from regio_common.plans import MEMORY_SIZES_MB

from ..db.models import Deployment
from .usage import Metered, UsageRefused, metered_in, record_usage

log = logging.getLogger(__name__)

# What a meter can truly report. A figure past these is refused rather than billed: one
# absurd event would otherwise overflow an invoice's amounts and stop its month's invoice.
MAX_SPAN = timedelta(days=1)  # a meter's period divides a day: no segment or period is longer
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of ours a meter's clock may be
MAX_REQUESTS = 10**10  # per environment and period: a million a second for three hours
MAX_BYTES = 10**15  # a petabyte per environment and period
MAX_BUILD_SECONDS = 24 * 3600  # builds have time limits far below it
MAX_INGRESS_NAME = 100  # keeps a traffic key inside UsageEvent.key's 200 characters


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(at: datetime) -> str:
    """A key's time: the same instant always reads the same, whatever offset it was sent with."""
    return _utc(at).isoformat()


def _seconds(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1)) / Decimal(1_000_000)


async def _record(session: AsyncSession, metered: Metered, *, key: str, kind: str, quantity: Decimal, unit: str,
                  start: datetime, end: datetime, memory_mb: int | None = None) -> bool:
    try:
        return await record_usage(
            session, key=key, organisation_id=metered.organisation_id, application_id=metered.application_id,
            environment_id=metered.environment_id, service_instance_id=None, region_id=metered.region_id, kind=kind,
            memory_mb=memory_mb, quantity=quantity, unit=unit, period_start=_utc(start), period_end=_utc(end))
    except UsageRefused as e:
        log.warning("usage dropped: %s", e)
        return False


async def _metered(session: AsyncSession, region: str, message: Message, environment_id, at: datetime) -> Metered | None:
    metered = await metered_in(session, region, environment_id, _utc(at))
    if metered is None:
        log.warning("region %s: %s %s about environment %s, gone or not one of the region's: dropped",
                    region, message.kind, message.id, environment_id)
    return metered


def _possible_span(start: datetime, end: datetime) -> bool:
    return start <= end and end - start <= MAX_SPAN and _utc(end) <= datetime.now(UTC) + CLOCK_SKEW


async def on_instance_metered(session: AsyncSession, message: InstanceUsageMetered, region: str) -> None:
    if not _possible_span(message.segment_start, message.segment_end) or message.memory_mb not in MEMORY_SIZES_MB:
        log.warning("region %s: %s %s cannot be true (%s to %s, %s MB): dropped", region, message.kind, message.id,
                    message.segment_start, message.segment_end, message.memory_mb)
        return
    metered = await _metered(session, region, message, message.environment_id, message.segment_start)
    if metered is not None:
        await _record(session, metered, key=f"instance:{message.instance_id}:{_iso(message.segment_start)}",
                      kind="instance", quantity=_seconds(message.segment_end - message.segment_start), unit="seconds",
                      start=message.segment_start, end=message.segment_end, memory_mb=message.memory_mb)


async def on_traffic_metered(session: AsyncSession, message: TrafficMetered, region: str) -> None:
    if len(message.ingress) > MAX_INGRESS_NAME or not message.ingress:
        log.warning("region %s: %s %s names an ingress of %d characters: dropped", region, message.kind, message.id,
                    len(message.ingress))
        return
    if (not _possible_span(message.period_start, message.period_end)
            or not 0 <= message.requests <= MAX_REQUESTS or not 0 <= message.bytes_served <= MAX_BYTES):
        log.warning("region %s: %s %s cannot be true (%s to %s, %s requests, %s bytes): dropped", region,
                    message.kind, message.id, message.period_start, message.period_end, message.requests,
                    message.bytes_served)
        return
    metered = await _metered(session, region, message, message.environment_id, message.period_start)
    if metered is None:
        return
    key = f"traffic:{message.ingress}:{message.environment_id}:{_iso(message.period_start)}"
    for suffix, kind, quantity, unit in ((":requests", "requests", message.requests, "requests"),
                                         (":bytes", "bytes_served", message.bytes_served, "bytes")):
        await _record(session, metered, key=key + suffix, kind=kind, quantity=Decimal(quantity), unit=unit,
                      start=message.period_start, end=message.period_end)


async def on_build_finished(session: AsyncSession, message: BuildFinished, region: str) -> None:
    """The build's time, against the deployment's environment. The dispatcher has checked that
    the deployment is the region's (its own region's or its application's)."""
    if not message.build_seconds or not math.isfinite(message.build_seconds) or message.build_seconds <= 0:
        return  # a reused image, or a builder that does not meter
    if message.build_seconds > MAX_BUILD_SECONDS:
        log.warning("region %s: %s %s says %s build seconds: not recorded", region, message.kind, message.id,
                    message.build_seconds)
        return
    environment_id = await session.scalar(select(Deployment.environment_id)
                                          .where(Deployment.id == message.deployment_id))
    if environment_id is None:
        return
    # A migration's deployment runs in its target: metered_in believes the target for it.
    metered = await _metered(session, region, message, environment_id, message.occurred_at)
    if metered is not None:
        seconds = Decimal(str(message.build_seconds))
        end = _utc(message.occurred_at)
        await _record(session, metered, key=f"build:{message.build_id}", kind="build", quantity=seconds,
                      unit="seconds", start=end - timedelta(seconds=message.build_seconds), end=end)
