"""Setting aside a message that cannot be published or handled, so that what comes after it
flows on. Each goes to the region's dead-letter stream (``bus.DEAD_LETTERS``) as a
``MessageSetAside``: what it was, where it was going, which deployment or environment it
belonged to, and why. The control panel fails that deployment when a service of the same
region set it aside (a runner agent's are only kept); operators list them all with
``regio dead-letters``."""
import json
import logging
from uuid import UUID, uuid5

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .bus import DEAD_LETTERS
from .messages import ID_HEADER, KIND_HEADER, MessageSetAside, decode, wire_size

log = logging.getLogger(__name__)

MAX_REASON = 2_000  # characters: a handler's exception can be long, the record stays small
_IDS = UUID("8d0c7c1e-52a3-4f0e-9a47-6f1d2b0c3a55")  # namespace of set-aside records' ids


def region_of(subject: str) -> str:
    """``region.<region>.…`` → ``<region>``: a dead letter stays in its message's region."""
    parts = subject.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "region" else ""


def belongs_to(payload: bytes) -> dict[str, UUID]:
    """The deployment and environment a message names, read from its JSON when it can be."""
    try:
        fields = json.loads(payload)
    except ValueError:
        return {}
    found = {}
    for key in ("deployment_id", "environment_id"):
        try:
            found[key] = UUID(str(fields[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return found


class DeadLetters:
    """Where one service sets aside what it cannot publish or handle."""

    def __init__(self, js: JetStreamContext, service: str):
        self.js = js
        self.service = service

    async def set_aside(self, subject: str, headers: dict[str, str] | None, payload: bytes, reason: str, *,
                        consumer: str | None = None, stream_sequence: int | None = None,
                        believed: bool = True) -> MessageSetAside:
        """Publishes the record (raises if that fails: the caller keeps the message and tries
        again). Its id comes from the message's, so a second try is dropped as a duplicate.
        ``believed=False``: the message could not be read or came on a subject not its own (it
        may be forged), so the deployment it names is not recorded, and not failed by it."""
        headers = headers or {}
        message_id = headers.get(ID_HEADER, "")
        reason = " ".join(reason.split())
        record = MessageSetAside(
            id=uuid5(_IDS, f"{self.service}/{consumer or '-'}/{message_id or f'{subject}#{stream_sequence}'}"),
            service=self.service, message_subject=subject, message_kind=headers.get(KIND_HEADER, "unknown"),
            message_id=message_id, size_bytes=wire_size(payload, headers),
            reason=reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + " [cut]",
            consumer=consumer, stream_sequence=stream_sequence, **(belongs_to(payload) if believed else {}),
        )
        await self.js.publish(record.subject(region_of(subject)), record.encode(), headers=record.headers())
        log.error("%s: set aside %s %s on %s (%s): %s", self.service, record.message_kind, message_id or "?",
                  subject, f"consumer {consumer}" if consumer else "not published", record.reason)
        return record


def subject(region: str) -> str:
    """Every service's dead letters of one region."""
    return f"region.{region}.dead-letters.>"


async def listed(js: JetStreamContext, region: str, limit: int = 1000) -> list[MessageSetAside]:
    """The region's dead letters still kept, oldest first (at most ``limit``, the newest)."""
    info = await js.stream_info(DEAD_LETTERS.name)
    if not info.state.messages:
        return []
    sub = await js.pull_subscribe(subject(region), durable=None, stream=DEAD_LETTERS.name, config=ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0))
    records: list[MessageSetAside] = []
    try:
        while True:
            pending = (await sub.consumer_info()).num_pending
            if not pending:
                break
            for msg in await sub.fetch(min(pending, 500), timeout=5):
                records.append(decode(msg.headers, msg.data))
    finally:
        await sub.unsubscribe()
    return records[-limit:]
