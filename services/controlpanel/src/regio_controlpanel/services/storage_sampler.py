"""Storage samples for the usage ledger: once per period, the size of every database and
bucket that holds an environment's data (provisioned, attached, or detached until removed),
recorded as GB-hours held for that period (size in 10^9 bytes × the period's hours).

A sample belongs to the period (aligned to the epoch) the billing clock is in when it is
taken; its key names the service instance and the period, so a second sample of the same
period (a restart, two control panels) is recorded once, and instances already sampled are
not asked again. Each server is asked apart: one that does not answer is logged and
skipped until the next period, and the others' samples are recorded. A bucket is summed
on its own, page by page, under a time limit of its own: a tenant's bucket of millions of
objects, or one that is slow to list, loses only its own sample, never the server's others'."""
import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.billing import UsageEvent
from ..db.models import Application, Environment, Service, ServiceInstance
from ..domain.service_instances import ServiceType, State
from ..region_services import database
from ..region_services.storage import ObjectStorage
from .clock import Clock
from .crypto import Vault
from .provisioning import DatabaseServer, server_of
from .usage import record_usage

log = logging.getLogger(__name__)

HOLDING_DATA = (State.PROVISIONED, State.ATTACHED, State.DETACHED)
SERVER_TIMEOUT_SECONDS = 120  # a database server's whole answer; a silent one must not hold the pass for ever
# One bucket's listing (1000 objects a request): a few million objects. Beyond, that bucket
# alone goes unsampled (logged); each request also has the client's own timeout.
BUCKET_TIMEOUT_SECONDS = 300
GB = Decimal(10) ** 9


@dataclass(frozen=True)
class Held:
    """One service instance's data, and whom it is recorded against."""
    instance_id: UUID
    service_id: UUID
    kind: str  # database_storage, bucket_storage
    name: str  # the database's or the bucket's
    organisation_id: UUID
    application_id: UUID
    environment_id: UUID
    region_id: UUID  # the service's


def period_of(at: datetime, seconds: float) -> tuple[datetime, datetime]:
    """The period, aligned to the epoch, that ``at`` is in."""
    length = timedelta(seconds=seconds)
    start = datetime.fromtimestamp(0, UTC) + ((at - datetime.fromtimestamp(0, UTC)) // length) * length
    return start, start + length


def storage_key(instance_id: UUID, period_start: datetime) -> str:
    return f"storage:{instance_id}:{period_start.astimezone(UTC).isoformat()}"


async def bucket_size(storage: ObjectStorage, bucket: str) -> int:
    """The bytes its objects hold, summed page by page: never the whole listing in memory."""
    size = 0
    async for stored in storage.iter_objects(bucket):
        size += stored.size
    return size


def gb_hours(size_bytes: int, start: datetime, end: datetime) -> Decimal:
    hours = Decimal((end - start) // timedelta(microseconds=1)) / Decimal(3_600_000_000)
    return (Decimal(size_bytes) / GB * hours).quantize(Decimal("0.000001"))


class StorageSampler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault, clock: Clock, period_seconds: float):
        self.sessions = sessions
        self.vault = vault
        self.clock = clock
        self.period_seconds = period_seconds

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storage sampling failed; again next period")
            # Until just after the next period begins (by the billing clock).
            _, end = period_of(self.clock.now(), self.period_seconds)
            await asyncio.sleep(max(1.0, (end - self.clock.now()).total_seconds() + 1))

    async def sample(self) -> int:
        """Samples every instance not yet sampled in the current period; returns how many were recorded."""
        start, end = period_of(self.clock.now(), self.period_seconds)
        held, services = await self._due(start)
        by_service: dict[UUID, list[Held]] = defaultdict(list)
        for item in held:
            by_service[item.service_id].append(item)
        recorded = 0
        for service_id, items in by_service.items():
            service = services[service_id]
            try:
                sizes = await self._sizes(service, items)
            except Exception as e:  # told without credentials: only the error's kind
                log.warning("storage samples of %s (%s) not taken this period: %s", service.name, service_id,
                            type(e).__name__)
                continue
            async with self.sessions() as session, session.begin():
                for item in items:
                    if item.name not in sizes:
                        log.warning("%s %s of service instance %s not found on %s: not sampled", item.kind,
                                    item.name, item.instance_id, service.name)
                        continue
                    if sizes[item.name] is None:  # not sampled, said already
                        continue
                    recorded += await record_usage(
                        session, key=storage_key(item.instance_id, start), organisation_id=item.organisation_id,
                        application_id=item.application_id, environment_id=item.environment_id,
                        service_instance_id=item.instance_id, region_id=item.region_id, kind=item.kind,
                        memory_mb=None, quantity=gb_hours(sizes[item.name], start, end), unit="gb_hours",
                        period_start=start, period_end=end)
        return recorded

    async def _due(self, start: datetime) -> tuple[list[Held], dict[UUID, Service]]:
        """The instances holding data and not yet sampled this period, and their services."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(ServiceInstance, Application.organisation_id, Application.id, Service)
                .join(Environment, Environment.id == ServiceInstance.environment_id)
                .join(Application, Application.id == Environment.application_id)
                .join(Service, Service.id == ServiceInstance.service_id)
                .where(ServiceInstance.state.in_([str(s) for s in HOLDING_DATA]),
                       ServiceInstance.credentials_encrypted.is_not(None)))).all()
            done = set((await session.execute(select(UsageEvent.key).where(
                UsageEvent.key.in_([storage_key(row[0].id, start) for row in rows])))).scalars()) if rows else set()
        held, services = [], {}
        for instance, organisation_id, application_id, service in rows:
            if storage_key(instance.id, start) in done:
                continue
            credentials = json.loads(self.vault.decrypt(instance.credentials_encrypted))
            is_database = instance.type == ServiceType.DATABASE
            held.append(Held(instance.id, service.id, "database_storage" if is_database else "bucket_storage",
                             credentials["database"] if is_database else credentials["bucket"], organisation_id,
                             application_id, instance.environment_id, service.region_id))
            services[service.id] = service
        return held, services

    async def _sizes(self, service: Service, items: list[Held]) -> dict[str, int | None]:
        """name -> bytes, of those found on the service's server (None: found, but not
        sampled this period, and logged)."""
        server = server_of(service, self.vault)
        if isinstance(server, DatabaseServer):
            # One query for all: PostgreSQL adds up each database's files, quick however big.
            return await asyncio.wait_for(database.database_sizes(server.admin_url, [i.name for i in items]),
                                          SERVER_TIMEOUT_SECONDS)
        sizes: dict[str, int | None] = {}
        async with server.client() as storage:
            for number, item in enumerate(items):
                try:
                    sizes[item.name] = await asyncio.wait_for(bucket_size(storage, item.name), BUCKET_TIMEOUT_SECONDS)
                except httpx.TransportError as e:
                    # The server, not the bucket, does not answer: asking it for each bucket left
                    # would hold the pass a request timeout per bucket. Those measured are kept.
                    log.warning("storage server of %s (%s) does not answer: %d buckets not sampled this period: %s",
                                service.name, service.id, len(items) - number, type(e).__name__)
                    sizes.update({rest.name: None for rest in items[number:]})
                    break
                except Exception as e:  # too big or slow to list, or gone since: the others are still sampled
                    log.warning("bucket %s of service instance %s not sampled this period: %s", item.name,
                                item.instance_id, f"its listing took over {BUCKET_TIMEOUT_SECONDS} s"
                                if isinstance(e, TimeoutError) else type(e).__name__)
                    sizes[item.name] = None
        return sizes
