"""Transactional outbox: a message is written in the same transaction as the change it
announces, and a relay publishes it to JetStream afterwards. A crash between the two
loses nothing; a crash after publishing re-sends, and the ``Nats-Msg-Id`` header lets
JetStream drop the duplicate.

A message too big for the server is refused where it is made (``Outbox.add`` raises
``MessageTooLarge``), so the service can fail what it belongs to. One that still cannot be
published (a server with a smaller limit, a stream that refuses it) is set aside by the relay
with its reason (see dead_letters) instead of holding up every message behind it."""
import asyncio
import logging
from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NoStreamResponseError
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .dead_letters import DeadLetters
from .messages import MAX_PAYLOAD_BYTES, Message, utcnow, wire_size

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    """The outbox, in the schema of the service that owns ``metadata``."""
    return Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("subject", String(255), nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "created_at", postgresql_where="published_at IS NULL"),
    )


class Outbox:
    """Write side, used inside a request's or a handler's transaction."""

    def __init__(self, table: Table, region: str, limit: int = MAX_PAYLOAD_BYTES):
        self.table = table
        self.region = region
        self.limit = limit  # bytes a message may have: the server's max_payload once connected
        # One per relay (``waiter``): a relay that clears its own never hides a commit from another.
        self._wakeups: list[asyncio.Event] = []

    async def add(self, session: AsyncSession, message: Message, region: str | None = None) -> None:
        """Raises ``MessageTooLarge`` (before writing anything) for a message the bus would refuse."""
        payload = message.encode(self.limit)
        await session.execute(
            insert(self.table).values(
                id=message.id,
                subject=message.subject(region or self.region),
                headers=message.headers(),
                payload=payload,
            )
        )
        # Wake the relay as soon as this transaction commits, not at the next poll.
        event.listen(session.sync_session, "after_commit", self._after_commit, once=True)

    def _after_commit(self, _session) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    def waiter(self) -> asyncio.Event:
        """An event set at every commit that added a message, for one relay."""
        wakeup = asyncio.Event()
        self._wakeups.append(wakeup)
        return wakeup

    def forget(self, wakeup: asyncio.Event) -> None:
        if wakeup in self._wakeups:
            self._wakeups.remove(wakeup)

    @staticmethod
    async def wait(wakeup: asyncio.Event, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await wakeup.wait()
        except TimeoutError:
            pass
        wakeup.clear()


ACK_TIMEOUT_SECONDS = 10.0


class OutboxRelay:
    """Publishes outbox rows in order; several relays of one service may run at once.

    ``subject_prefix``: only the rows whose subject starts with it (``region.<slug>.``), on a
    ``js`` that reaches that region: the control panel runs one per region, so a region whose
    link is cut holds up only its own messages."""

    def __init__(self, outbox: Outbox, sessions: async_sessionmaker[AsyncSession], js: JetStreamContext,
                 dead_letters: DeadLetters, poll_seconds: float = 1.0, keep: timedelta = timedelta(days=1),
                 subject_prefix: str | None = None):
        self.outbox = outbox
        self.sessions = sessions
        self.js = js
        self.dead_letters = dead_letters
        self.poll_seconds = poll_seconds
        self.keep = keep
        self.subject_prefix = subject_prefix
        self.unanswered = False  # no stream answers: the region's server, or its link, is down

    async def run(self) -> None:
        wakeup = self.outbox.waiter()
        which = f" of {self.subject_prefix}*" if self.subject_prefix else ""
        try:
            while True:
                try:
                    sent = await self.publish_pending()
                    if self.unanswered:
                        log.info("outbox relay%s: the stream answers again", which)
                        self.unanswered = False
                    if sent:
                        continue
                    await self.prune()
                except asyncio.CancelledError:
                    raise
                except NoStreamResponseError:
                    # Said once per outage, not at every poll: a region can be cut off for hours.
                    if not self.unanswered:
                        log.warning("outbox relay%s: no stream answers (its server or the link to it is down); "
                                    "the messages wait", which)
                        self.unanswered = True
                    await asyncio.sleep(self.poll_seconds)
                except Exception:
                    log.exception("outbox relay%s failed; retrying", which)
                    await asyncio.sleep(self.poll_seconds)
                await self.outbox.wait(wakeup, self.poll_seconds)
        finally:
            self.outbox.forget(wakeup)

    def _mine(self, query):
        """Only this relay's rows. A LIKE on the prefix (its wildcards escaped) beside the
        unpublished rows' partial index, which still gives them in order."""
        if self.subject_prefix is None:
            return query
        return query.where(self.outbox.table.c.subject.startswith(self.subject_prefix, autoescape=True))

    async def publish_pending(self, batch: int = 100) -> int:
        t = self.outbox.table
        async with self.sessions() as session, session.begin():
            rows = (
                await session.execute(
                    self._mine(select(t.c.id, t.c.subject, t.c.headers, t.c.payload)
                               .where(t.c.published_at.is_(None)))
                    .order_by(t.c.created_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            # Pipelined: the batch goes out in order on the one connection and its acks are
            # awaited together, so a busy server costs one round trip per batch, not per
            # message. A message whose ack is missing is sent again with the batch (the stream
            # drops the duplicate by its id).
            set_aside: list[tuple[object, str]] = []
            sent = []
            for row in rows:
                # Checked here, not left to the client: over the limit the server drops the
                # connection, and the client's own check leaves a publish pending for ever.
                size = wire_size(row.payload, row.headers)
                if size > self.outbox.limit:
                    set_aside.append((row, f"the message is {size} bytes, over the server's message limit of "
                                           f"{self.outbox.limit} bytes"))
                    continue
                sent.append((row, await self.js.publish_async(row.subject, row.payload, headers=row.headers,
                                                              wait_stall=ACK_TIMEOUT_SECONDS)))
            acks = [ack for _, ack in sent]
            try:
                async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
                    results = await asyncio.gather(*acks, return_exceptions=True)
            finally:
                for ack in acks:
                    ack.cancel()  # the ones left: each holds a place among the pending publishes
            for (row, _), result in zip(sent, results):
                if isinstance(result, BadRequestError):  # the stream refuses this one, now and later
                    set_aside.append((row, f"the stream refused it: {result.description or result}"))
                elif isinstance(result, BaseException):
                    raise result  # passing (no ack, no stream): the whole batch again
            for row, reason in set_aside:
                await self.dead_letters.set_aside(row.subject, row.headers, row.payload, reason)
            if rows:
                await session.execute(
                    update(t).where(t.c.id.in_([r.id for r in rows])).values(published_at=utcnow())
                )
        return len(rows)

    async def prune(self) -> None:
        t = self.outbox.table
        async with self.sessions() as session, session.begin():
            await session.execute(self._mine(delete(t).where(t.c.published_at < utcnow() - self.keep)))
