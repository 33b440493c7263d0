"""The control panel's link to each region it serves.

A region's JetStream is either the control panel's own server's (``jetstream_domain`` NULL:
the first region) or that of the region's own server, a leaf node of the control panel's,
reached through its JetStream domain. For each region that is not retired the control panel
keeps one link: the region's consumers (events, dead letters, the commands it sends itself)
and an outbox relay for the rows bound for that region, all on the region's JetStream
context. A region reached through a domain gets a connection of its own, with replies under
an inbox prefix of its own (the only one its leaf may publish to), so a region whose link is
cut, or slow, holds up only its own messages and requests.

The regions are looked up again every ``refresh_seconds``: a region added while the control
panel runs is served without a restart, a retired one's link is stopped."""
import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import select

from regio_common import bus
from regio_common.bus import DEAD_LETTERS
from regio_common.db import BoundedSessions
from regio_common.dead_letters import DeadLetters
from regio_common.outbox import OutboxRelay
from regio_common.runtime import Runtime
from regio_common.subscriber import Subscriber

from ..db.models import Region
from .handlers import Consumer

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0
RESTART_MAX_SECONDS = 10.0
# Connections of the pool (15) one region's consumers and relay may hold at once.
REGION_SESSIONS = 3


class RegionNotServed(LookupError):
    """The region has no link now: retired, unknown, or its connection not made yet."""


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Runs ``run`` until cancelled, again after each crash: a second after the first, up to
    RESTART_MAX_SECONDS while it keeps crashing (a region whose link is cut, for hours), with
    one traceback for the first crash of a series and a line for the others."""
    failures = 0
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if asyncio.get_running_loop().time() - started > RESTART_MAX_SECONDS:
                failures = 0  # it ran a while: a new series
            delay = min(RESTART_SECONDS * 2 ** failures, RESTART_MAX_SECONDS)
            if failures == 0:
                log.exception("%s crashed; restarting in %ss", name, delay)
            else:
                log.warning("%s crashed again (%s: %s); restarting in %ss", name, type(e).__name__, e, delay)
            failures += 1
            await asyncio.sleep(delay)


async def _cancel(tasks: set[asyncio.Task]) -> None:
    pending = {task for task in tasks if not task.done()}
    while pending:
        # Cancel again until done: on Python 3.11 asyncio.wait_for (inside nats-py's fetch)
        # can swallow a cancellation that races with an arriving message.
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)


class RegionLink:
    """One region's consumers and outbox relay, on its JetStream context."""

    def __init__(self, runtime: Runtime, slug: str, jetstream_domain: str | None, consumers: list[Consumer]):
        self.runtime = runtime
        self.slug = slug
        self.jetstream_domain = jetstream_domain
        self.consumers = consumers
        # The main connection's at once; a region of its own's once connected.
        self.js: JetStreamContext | None = runtime.js if jetstream_domain is None else None
        self._nc: Client | None = None  # a connection of its own (a region reached through a domain)
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._tasks.add(asyncio.create_task(self._start(), name=f"region link {self.slug}"))

    async def stop(self) -> None:
        self.js = None
        await _cancel(self._tasks)  # the start too, if it is still connecting
        self._tasks.clear()
        if self._nc is not None:
            # close, not drain: unacked messages come back to the next link (see Runtime.stop)
            await self._nc.close()
            self._nc = None

    async def _connect(self) -> JetStreamContext:
        if self.jetstream_domain is None:
            return self.runtime.js
        settings = self.runtime.settings
        # The replies to its requests to this region arrive under an inbox of their own: the
        # only part of the control panel's inbox the region's leaf may publish to.
        inbox = bus.region_inbox(settings.nats_user or "controlpanel", self.slug)
        while True:
            try:
                self._nc = await bus.connect(settings.nats_url, f"controlpanel-{self.slug}", settings.nats_user,
                                             settings.nats_password, inbox=inbox)
                return self._nc.jetstream(domain=self.jetstream_domain)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("region %s: connecting failed; again in %ss", self.slug, RESTART_SECONDS)
                await asyncio.sleep(RESTART_SECONDS)

    async def _start(self) -> None:
        js = await self._connect()
        # What the control panel cannot publish or handle for this region is set aside in the
        # region's own dead-letter stream.
        dead_letters = self.runtime.dead_letters if self.jetstream_domain is None else \
            DeadLetters(js, self.runtime.service)
        # A region's consumers and relay together hold at most a few of the pool's connections,
        # however much its server sends them (its machines may be an organisation's own).
        sessions = BoundedSessions(self.runtime.sessions, REGION_SESSIONS)
        for consumer in self.consumers:
            subscriber = Subscriber(js, sessions, self.runtime.inbox, stream=consumer.stream,
                                    durable=consumer.durable, subject=consumer.subject, handler=consumer.handler,
                                    dead_letters=None if consumer.stream == DEAD_LETTERS.name else dead_letters)
            self._tasks.add(asyncio.create_task(_supervise(f"consumer {consumer.durable}", subscriber.run)))
        relay = OutboxRelay(self.runtime.outbox, sessions, js, dead_letters,
                            subject_prefix=f"region.{self.slug}.")
        self._tasks.add(asyncio.create_task(_supervise(f"outbox relay {self.slug}", relay.run)))
        self.js = js


class RegionLinks:
    """Every served region's link, kept in step with the regions table."""

    def __init__(self, runtime: Runtime, consumers: Callable[[str], list[Consumer]], refresh_seconds: float = 2):
        self.runtime = runtime
        self.consumers = consumers
        self.refresh_seconds = refresh_seconds
        self._links: dict[str, RegionLink] = {}
        self._stopped = False

    def jetstream(self, slug: str) -> JetStreamContext:
        """The JetStream context of ``slug``'s region (its runtime logs are read through it)."""
        link = self._links.get(slug)
        if link is None or link.js is None:
            raise RegionNotServed(f"region {slug!r} is not connected")
        return link.js

    @property
    def served(self) -> dict[str, str | None]:
        return {slug: link.jetstream_domain for slug, link in self._links.items()}

    async def regions(self) -> dict[str, str | None]:
        """slug -> JetStream domain of every region not retired. The control panel's own region
        is served before it is in the table (the first start, before seeding)."""
        async with self.runtime.sessions() as session:
            rows = (await session.execute(select(Region.slug, Region.jetstream_domain, Region.retired_at))).all()
        found = {row.slug: row.jetstream_domain for row in rows if row.retired_at is None}
        own = self.runtime.settings.region
        if own not in {row.slug for row in rows}:
            found[own] = None
        return found

    async def refresh(self) -> None:
        wanted = await self.regions()
        if self._stopped:
            return
        for slug, link in list(self._links.items()):
            if slug not in wanted or wanted[slug] != link.jetstream_domain:
                log.info("region %s: no longer served%s", slug, "" if slug not in wanted else " through this link")
                del self._links[slug]
                await link.stop()
        for slug, domain in wanted.items():
            if self._stopped:  # stopped while a link above was
                return
            if slug not in self._links:
                log.info("region %s: served%s", slug, f" through JetStream domain {domain}" if domain else "")
                link = RegionLink(self.runtime, slug, domain, self.consumers(slug))
                self._links[slug] = link
                link.start()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("looking the regions up failed; again in %ss", self.refresh_seconds)
            await asyncio.sleep(self.refresh_seconds)

    async def stop(self) -> None:
        self._stopped = True
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.stop() for link in links))
