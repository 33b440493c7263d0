"""Runtime logs: what an environment's containers print, and what the platform says about them.

Runner agents publish one message per line to ``region.<region>.logs.<environment>``, the
ingress one per request to that subject + ``.access``;
the REGIO_LOGS stream keeps the newest lines of each environment (see ``bus.LOGS``) and
the control panel reads them back for the API. A line's place is its stream sequence."""
from datetime import datetime
from typing import NamedTuple
from uuid import UUID, uuid4

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from .bus import LOGS

WEB = "web"  # an application container's own output
PLATFORM = "platform"  # what the platform says about the environment's instances
ACCESS = "ingress"  # one line per request the ingress proxied to (or refused for) the environment

FETCH_BATCH = 500
FETCH_TIMEOUT = 2.0  # only waited when lines vanish while being read (aged out)


class LogLine(BaseModel):
    timestamp: datetime  # when the line was written, not when it was published
    service: str
    instance: UUID | None = None  # None: about the environment as a whole, e.g. its runner agent
    message: str


class StoredLine(NamedTuple):
    sequence: int  # the stream sequence: where a reader continues from
    line: LogLine


def subject(region: str, environment_id: UUID) -> str:
    """The containers' output and what the platform says about them."""
    return f"region.{region}.logs.{environment_id}"


def access_subject(region: str, environment_id: UUID) -> str:
    """The ingress's access lines: a subject of their own, so that a busy site's requests
    cannot push its application's output out of the stream (the limit is per subject)."""
    return f"{subject(region, environment_id)}.access"


def subjects(region: str, environment_id: UUID) -> list[str]:
    """Every line of an environment, for a reader: interleaved in the order they were stored."""
    return [subject(region, environment_id), access_subject(region, environment_id)]


async def read(js: JetStreamContext, subjects: str | list[str], after: int = 0,
               limit: int | None = None) -> list[StoredLine]:
    """The lines on ``subjects`` after stream sequence ``after``, oldest first: the first
    ``limit`` of them, or every one stored now. A reader of its own on the server, removed
    when done; the subjects' per-subject limit bounds how much it reads."""
    subjects = [subjects] if isinstance(subjects, str) else subjects
    last = 0
    for each in subjects:
        try:
            last = max(last, (await _last_message(js, each)).seq)
        except NotFoundError:
            pass
    if last <= after:
        return []
    # Named, and with one subject as its single filter: the server then takes the filter from
    # the create request's subject, where a reader's NATS permissions can limit it (nats_auth).
    one = len(subjects) == 1
    consumer = await js.add_consumer(LOGS.name, ConsumerConfig(
        name=f"logs-reader-{uuid4().hex}",
        filter_subject=subjects[0] if one else None,
        filter_subjects=None if one else subjects,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30.0,  # the server removes it if this reader dies before deleting it
    ))
    sub = await js.pull_subscribe_bind(consumer=consumer.name, stream=LOGS.name)
    lines: list[StoredLine] = []
    try:
        while limit is None or len(lines) < limit:
            want = FETCH_BATCH if limit is None else min(FETCH_BATCH, limit - len(lines))
            try:
                messages = await sub.fetch(want, timeout=FETCH_TIMEOUT)
            except TimeoutError:  # nats-py raises asyncio's, or its own subclass of it
                break
            for message in messages:
                try:
                    line = LogLine.model_validate_json(message.data)
                except ValidationError:
                    continue  # not a log line: nothing a reader could show
                lines.append(StoredLine(message.metadata.sequence.stream, line))
            if not messages or messages[-1].metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(LOGS.name, consumer.name)
        except NotFoundError:
            pass
    return lines


async def _last_message(js: JetStreamContext, subject: str):
    """A direct get names the subject in its own (see LOGS.allow_direct); a stream declared
    before that allowed it answers the older request."""
    try:
        return await js.get_last_msg(LOGS.name, subject, direct=True)
    except NoRespondersError:
        return await js.get_last_msg(LOGS.name, subject)
