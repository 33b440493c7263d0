"""The NATS/JetStream connection and the one place streams and buckets are declared."""
import dataclasses
import logging
from collections.abc import Sequence

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

DAY = 24 * 3600

# Commands are work queues: each message is taken by one consumer and removed on ack.
COMMANDS = StreamConfig(
    name="REGIO_COMMANDS",
    subjects=["region.*.commands.>"],
    retention=RetentionPolicy.WORK_QUEUE,
    storage=StorageType.FILE,
    duplicate_window=120.0,
)
# Events are kept for a week; every interested service reads them with its own durable consumer.
EVENTS = StreamConfig(
    name="REGIO_EVENTS",
    subjects=["region.*.events.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    max_age=7 * DAY,
    discard=DiscardPolicy.OLD,
    duplicate_window=120.0,
)
# Runtime logs: one subject per environment (see runtime_logs). Limits, not acks, decide
# what is kept: the newest lines of each environment, for a week at most.
LOGS = StreamConfig(
    name="REGIO_LOGS",
    subjects=["region.*.logs.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    max_msgs_per_subject=5000,
    max_age=7 * DAY,
    discard=DiscardPolicy.OLD,
    allow_direct=True,  # a reader's last-line lookup names its subject, which permissions can limit
)
# Messages a service could not publish or handle, each with its reason (see
# messages.MessageSetAside): kept a month for operators (`regio dead-letters`) and read by the
# control panel, which fails what they belonged to. One subject per service that set them aside.
DEAD_LETTERS = StreamConfig(
    name="REGIO_DEAD_LETTERS",
    subjects=["region.*.dead-letters.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    max_age=30 * DAY,
    max_msgs_per_subject=10_000,
    discard=DiscardPolicy.OLD,
    duplicate_window=120.0,
)
STREAMS = (COMMANDS, EVENTS, LOGS, DEAD_LETTERS)


def durable_name(consumer: str, region: str) -> str:
    """A durable consumer's name: what consumes, and for which region. Renaming one leaves
    the old durable on the server, which a work-queue stream then refuses to share with."""
    return f"{consumer}-{region}"


def runner_desired_bucket(region: str) -> str:
    """Key = runner name, value = every instance the controller wants on that runner."""
    return f"{region}-runner-desired"


def runner_state_bucket(region: str) -> str:
    """Key = runner name, value = the runner's last full-state heartbeat."""
    return f"{region}-runner-state"


# Heartbeats (region_status): core NATS, not JetStream; the control panel keeps the newest.
STATUS_SUBJECTS = "region.*.status.>"


def status_subject(region: str, component: str) -> str:
    """Where ``component`` (builder, controller, ingress) of ``region`` says how it is."""
    return f"region.{region}.status.{component}"


def inbox_prefix(user: str) -> str:
    """Where ``user``'s replies arrive: a prefix of its own, which its NATS permissions name."""
    return f"_INBOX.{user}"


def region_inbox(user: str, region: str) -> str:
    """The inbox prefix of ``user``'s connection for ``region`` (the control panel's, one per
    region behind a leaf node): the region's link may send replies under it and no other."""
    return f"{inbox_prefix(user)}.{region}"


def _under(inbox: str, prefix: str) -> bool:
    return inbox == prefix or inbox.startswith(prefix + ".")


async def connect(url: str, name: str, user: str | None = None, password: str | None = None,
                  inbox: str | None = None) -> Client:
    """``inbox``: an inbox prefix of this connection's own, under its user's (``region_inbox``);
    the server refuses the connection any other, so one is refused here, where it is a bug."""
    prefix = inbox_prefix(user) if user else "_INBOX"
    if inbox is not None and not _under(inbox, prefix):
        raise ValueError(f"inbox {inbox!r} must lie under {prefix!r}")

    async def on_error(e: Exception) -> None:
        log.warning("nats: %s", e)

    return await nats.connect(
        url,
        name=name,
        user=user,
        password=password,
        # A user's replies under a prefix of its own, which only it may subscribe to (nats_auth).
        inbox_prefix=inbox or prefix,
        max_reconnect_attempts=-1,  # keep trying forever: a restarted NATS must not kill services
        reconnect_time_wait=0.5,
        error_cb=on_error,
    )


def for_regions(config: StreamConfig, regions: Sequence[str] | None) -> StreamConfig:
    """``config`` with the subjects of ``regions`` only (None: of every region). A server that
    holds some regions' streams (the hub holds the first region's) must not capture another's
    messages, which that region's own server stores."""
    if regions is None:
        return config
    if isinstance(regions, str) or not regions:
        raise ValueError("a stream needs at least one region")
    subjects = [subject.replace("region.*.", f"region.{region}.", 1)
                for region in regions for subject in config.subjects]
    return dataclasses.replace(config, subjects=subjects)


async def ensure_streams(js: JetStreamContext, regions: Sequence[str] | None = None) -> None:
    """Declares the platform's streams, or brings existing ones to these subjects."""
    for config in (for_regions(c, regions) for c in STREAMS):
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)


async def ensure_buckets(js: JetStreamContext, region: str) -> None:
    for bucket, history in ((runner_desired_bucket(region), 1), (runner_state_bucket(region), 1)):
        try:
            info = await js.stream_info(f"KV_{bucket}")
        except NotFoundError:
            await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE,
                                                     direct=True))
            continue
        # Direct gets name the key in their subject, where a runner's permissions can limit them
        # to its own key (nats_auth); a bucket made before them is switched.
        if not info.config.allow_direct:
            info.config.allow_direct = True
            await js.update_stream(info.config)
