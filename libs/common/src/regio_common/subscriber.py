"""Durable JetStream consumers with explicit acks and idempotent handling.

A handler runs inside a database transaction together with a row in the service's
``inbox`` table keyed by the message id, so a redelivered message is acknowledged
without running the handler twice. A handler that raises is retried on the same
message after a growing delay, up to ``max_deliver`` times, before any later
message is handled, so a consumer applies its subject's messages in the order
they were published even through a passing failure (a nak would let later ones
overtake). After the last attempt the message is set aside with its reason (see
dead_letters: the control panel fails the deployment it belonged to) and terminated, so
the messages behind it flow on; never silently dropped. A message that cannot be read
at all, or that arrived on a subject other than its kind's, is set aside at once.

A consumer whose messages only need ordering within one key (an environment's commands)
names that key with ``lane``: the messages of a fetched batch are then handled side by
side, one lane per key, each lane in published order, and the next batch waits for the
whole batch. Handled one after another, a burst of a thousand rollout requests took a
busy event loop's round trips a thousand times over."""
import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from uuid import UUID

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError
from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .dead_letters import DeadLetters, region_of
from .messages import Message, UnknownMessage, decode

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Message], Awaitable[None]]
Lane = Callable[[Message], Hashable]

BACKOFF_SECONDS = (0.5, 1, 2, 5, 10, 30)


def by_environment(message: Message) -> Hashable:
    """The lane of a message about one environment (None for one about none)."""
    return getattr(message, "environment_id", None)


def inbox_table(metadata: MetaData) -> Table:
    """Ids of messages this service has handled, in its own schema."""
    return Table(
        "inbox",
        metadata,
        Column("message_id", Uuid, primary_key=True),
        Column("consumer", String(128), primary_key=True),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Subscriber:
    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        inbox: Table,
        *,
        stream: str,
        durable: str,
        subject: str,
        handler: Handler,
        max_deliver: int = 8,
        ack_wait: float = 60.0,
        deliver_new_only: bool = False,
        lane: Lane | None = None,
        dead_letters: DeadLetters | None = None,
    ):
        self.js = js
        self.sessions = sessions
        self.inbox = inbox
        self.stream = stream
        self.durable = durable
        self.subject = subject
        self.handler = handler
        self.max_deliver = max_deliver
        self.lane = lane
        self.dead_letters = dead_letters  # None: only logged (the dead letters' own consumer)
        self.config = ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            deliver_policy=DeliverPolicy.NEW if deliver_new_only else DeliverPolicy.ALL,
        )

    async def run(self) -> None:
        sub = await self.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=self.config)
        unanswered = False  # no JetStream answers: a region's server, or the link to it, is down
        while True:
            try:
                msgs = await sub.fetch(batch=32, timeout=5)
            except (NatsTimeoutError, asyncio.TimeoutError):
                msgs = []  # nothing new, and an answer all the same
            except asyncio.CancelledError:
                raise
            except ServiceUnavailableError:
                # Said once per outage, not every second: a region can be cut off for hours.
                if not unanswered:
                    log.warning("%s: no JetStream answers (its server or the link to it is down); "
                                "fetching again until it does", self.durable)
                    unanswered = True
                await asyncio.sleep(1)
                continue
            except Exception:
                log.exception("%s: fetch failed", self.durable)
                await asyncio.sleep(1)
                continue
            if unanswered:
                log.info("%s: JetStream answers again", self.durable)
                unanswered = False
            if msgs:
                await self._handle_batch(msgs)

    async def _handle_batch(self, msgs) -> None:
        lanes: dict[Hashable, list] = {}
        for msg in msgs:
            try:
                message = decode(msg.headers, msg.data)
            except (UnknownMessage, ValueError) as e:
                await self._set_aside(msg, f"it cannot be read: {e}", believed=False)
                continue
            if message.subject(region_of(msg.subject)) != msg.subject:
                # The kind comes from a header its publisher chose: a runner allowed only the
                # deployment log's subject could otherwise send a build.finished there.
                await self._set_aside(msg, f"a {message.kind} message does not travel on {msg.subject}",
                                      believed=False)
                continue
            key = self.lane(message) if self.lane is not None else None
            lanes.setdefault(key, []).append((msg, message))

        async def handle_in_order(lane: list) -> None:
            for msg, message in lane:
                await self._handle(msg, message)

        await asyncio.gather(*(handle_in_order(lane) for lane in lanes.values()))

    async def _handle(self, msg, message: Message) -> None:
        attempt = msg.metadata.num_delivered
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    if await self._seen(session, message.id):
                        log.debug("%s: %s already handled", self.durable, message.id)
                    else:
                        await self.handler(session, message)
                await msg.ack()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if attempt >= self.max_deliver:
                    log.exception("%s: %s failed %d times; giving up", self.durable, message.kind, attempt)
                    await self._set_aside(msg, f"handling it failed {attempt} times, last with "
                                               f"{type(e).__name__}: {e}")
                    return
                delay = BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)]
                log.exception("%s: %s failed (attempt %d); retry in %ss", self.durable, message.kind, attempt, delay)
            # Tell JetStream the message is still being worked on, so it is not redelivered
            # (to us, out of order) while we wait.
            await msg.in_progress()
            await asyncio.sleep(delay)
            attempt += 1

    async def _set_aside(self, msg, reason: str, believed: bool = True) -> None:
        """Puts the message aside with its reason and ends its deliveries, so the ones behind it
        are handled. If the record cannot be published, the log line is all there is.
        ``believed=False``: the deployment it names is not recorded (see DeadLetters.set_aside):
        a forged message must not fail another tenant's deployment either."""
        if self.dead_letters is None:
            log.error("%s: message on %s terminated: %s", self.durable, msg.subject, reason)
        else:
            try:
                await self.dead_letters.set_aside(msg.subject, msg.headers, msg.data, reason, consumer=self.durable,
                                                  stream_sequence=msg.metadata.sequence.stream, believed=believed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: message on %s terminated, and could not be set aside: %s",
                              self.durable, msg.subject, reason)
        await msg.term()

    async def _seen(self, session: AsyncSession, message_id: UUID) -> bool:
        result = await session.execute(
            pg_insert(self.inbox)
            .values(message_id=message_id, consumer=self.durable)
            .on_conflict_do_nothing()
            .returning(self.inbox.c.message_id)
        )
        return result.first() is None
