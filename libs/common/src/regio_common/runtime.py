"""What a running service holds: its engine and sessions, the NATS connection,
the outbox with its relay, its heartbeat, and supervised background tasks."""
import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import bus, db
from .app import ReadinessCheck
from .dead_letters import DeadLetters
from .outbox import Outbox, OutboxRelay, outbox_table
from .region_status import ComponentStatus
from .settings import ServiceSettings
from .subscriber import Handler, Subscriber, inbox_table

log = logging.getLogger(__name__)


def messaging_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and inbox every service keeps in its own schema."""
    return outbox_table(metadata), inbox_table(metadata)


# A readiness check that takes longer is failed: a heartbeat is never held up for long.
CHECK_TIMEOUT_SECONDS = 2.0

Details = Callable[[], Awaitable[dict]]


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings, outbox: Table, inbox: Table, relay: bool = True):
        """``relay``: run one outbox relay for every row on the service's own connection; the
        control panel runs one per region instead (its messaging/region_links.py)."""
        self.service = service
        self.settings = settings
        self.relay_all = relay
        self.outbox = Outbox(outbox, settings.region)
        self.inbox = inbox
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.dead_letters: DeadLetters | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.engine = db.make_engine(self.settings.database_url)
        self.sessions = db.make_sessionmaker(self.engine)
        self.nc = await bus.connect(self.settings.nats_url, self.service, self.settings.nats_user,
                                    self.settings.nats_password)
        self.js = self.nc.jetstream()
        self.outbox.limit = self.nc.max_payload  # as the server announced it
        self.dead_letters = DeadLetters(self.js, self.service)
        if self.relay_all:
            self.spawn("outbox-relay", OutboxRelay(self.outbox, self.sessions, self.js, self.dead_letters).run)

    def subscribe(self, stream: str, durable: str, subject: str, handler: Handler, **kwargs) -> None:
        # ``durable`` must name the region (see bus.durable_name): a durable keeps the filter
        # it was made with, so two regions on one NATS must never share one.
        # Every consumer sets aside what it cannot handle, except the dead letters' own.
        dead_letters = None if stream == bus.DEAD_LETTERS.name else self.dead_letters
        subscriber = Subscriber(self.js, self.sessions, self.inbox, stream=stream, durable=durable,
                                subject=subject, handler=handler, dead_letters=dead_letters, **kwargs)
        self.spawn(f"consumer {durable}", subscriber.run)

    def report_status(self, details: Details | None = None,
                      checks: dict[str, ReadinessCheck] | None = None) -> None:
        """Publishes the service's heartbeat (region_status) every ``settings.status_seconds``:
        ready when every readiness check passes (``checks``: the service's /readyz ones, the
        runtime's own if None), with what ``details`` returns."""
        checks = self.readiness_checks() if checks is None else checks

        async def report() -> None:
            while True:
                try:
                    await self.publish_status(details, checks)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("status of %s not published", self.service)
                await asyncio.sleep(self.settings.status_seconds)

        self.spawn("status", report)

    async def status(self, details: Details | None, checks: dict[str, ReadinessCheck]) -> ComponentStatus:
        failed = []
        for name, check in checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                    await check()
            except asyncio.CancelledError:
                raise
            except Exception:
                failed.append(name)
        said: dict = {}
        if details is not None:
            try:
                said = await details()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the details of %s's status failed", self.service)
                failed.append("details")
        if failed:
            said = {**said, "failed": failed}
        try:
            return ComponentStatus(region=self.settings.region, component=self.service, ready=not failed,
                                   details=said)
        except ValueError as e:  # too big: still heard, without what did not fit
            log.error("the status of %s is refused, sent without its details: %s", self.service, e)
            return ComponentStatus(region=self.settings.region, component=self.service, ready=not failed,
                                   details={"error": "details over the size limit",
                                            **({"failed": failed} if failed else {})})

    async def publish_status(self, details: Details | None, checks: dict[str, ReadinessCheck]) -> None:
        status = await self.status(details, checks)
        if self.nc is not None and self.nc.is_connected:  # a stale heartbeat is worth nothing
            await self.nc.publish(status.subject, status.encode())

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` for the life of the service; restart it if it crashes."""

        async def supervise() -> None:
            while True:
                try:
                    await run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s crashed; restarting in 1s", name)
                    await asyncio.sleep(1)

        self._tasks.append(asyncio.create_task(supervise(), name=name))

    def readiness_checks(self) -> dict:
        """The checks every service's /readyz runs; a service adds its own (docker, caddy)."""

        async def database() -> None:
            await db.ping(self.engine)

        async def nats() -> None:
            if self.nc is None or not self.nc.is_connected:
                raise RuntimeError("NATS not connected")

        return {"db": database, "nats": nats}

    async def stop(self) -> None:
        pending = set(self._tasks)
        while pending:
            # Cancel again until done: on Python 3.11 asyncio.wait_for (used inside nats-py's
            # fetch) swallows a cancellation that races with an arriving message.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1)
        self._tasks.clear()
        if self.nc is not None:
            # close, not drain: consumers are stopped already and unacked messages come
            # back to the next run; drain waits out pending pulls (up to 30 s).
            await self.nc.close()
        if self.engine is not None:
            await self.engine.dispose()
