"""Versioned commands and events that cross services over JetStream.

Every message names its ``kind`` and ``version``; both travel in headers so a
consumer can refuse what it does not understand instead of misreading it.
Subjects carry the region: ``region.<region>.commands.<queue>`` for work queues
and ``region.<region>.events.<topic>`` for facts every interested service reads.
"""
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

KIND_HEADER = "Regio-Kind"
VERSION_HEADER = "Regio-Version"
ID_HEADER = "Nats-Msg-Id"  # JetStream drops a duplicate within its window

# NATS' default max_payload. A service checks against what its own server announces
# (``Outbox.limit``); this is the bound where no server is known (tests, tools).
MAX_PAYLOAD_BYTES = 1024 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]  # the subject's tail after the region

    id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)

    def subject(self, region: str) -> str:
        return subject_for(type(self), region)

    def headers(self) -> dict[str, str]:
        return {ID_HEADER: str(self.id), KIND_HEADER: self.kind, VERSION_HEADER: str(self.version)}

    def encode(self, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
        """The payload, refused where the message is made when the server would refuse it:
        published, it would only be set aside."""
        payload = self.model_dump_json().encode()
        size = wire_size(payload, self.headers())
        if size > limit:
            raise MessageTooLarge(self.kind, size, limit)
        return payload


class MessageTooLarge(ValueError):
    """A message bigger than the bus carries: the thing it belongs to fails with this reason."""

    def __init__(self, kind: str, size: int, limit: int):
        super().__init__(f"a {kind} message is {size} bytes, over the message limit of {limit} bytes")
        self.kind, self.size, self.limit = kind, size, limit


def wire_size(payload: bytes, headers: dict[str, str] | None) -> int:
    """What the server counts against its max_payload: the headers block ("NATS/1.0", a line
    per header, a blank line) and the payload. Over it, the server closes the connection."""
    if not headers:
        return len(payload)
    block = 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return block + len(payload)


def subject_for(message_type: type[Message], region: str) -> str:
    return f"region.{region}.{message_type.topic}"


_REGISTRY: dict[tuple[str, int], type[Message]] = {}


def register(cls: type[Message]) -> type[Message]:
    _REGISTRY[(cls.kind, cls.version)] = cls
    return cls


class UnknownMessage(Exception):
    pass


def decode(headers: dict[str, str] | None, data: bytes) -> Message:
    headers = headers or {}
    key = (headers.get(KIND_HEADER, ""), int(headers.get(VERSION_HEADER, "0") or 0))
    cls = _REGISTRY.get(key)
    if cls is None:
        raise UnknownMessage(f"no model for kind={key[0]!r} version={key[1]}")
    return cls.model_validate_json(data)


# --- commands ------------------------------------------------------------------


@register
class ProvisioningRequested(Message):
    """Control panel → itself: create the databases and buckets a deployment's environment
    waits for, then go on with the deployment. Through the outbox and a durable consumer,
    so a control panel that stops half way carries on where it was."""

    kind = "provisioning.requested"
    topic = "commands.provisioning"

    deployment_id: UUID


@register
class BuildRequested(Message):
    """Control panel → builder: build the head of a branch (or one commit of it) for a deployment."""

    kind = "build.requested"
    topic = "commands.builds"

    deployment_id: UUID
    application_id: UUID
    repository_url: str  # never with credentials in it
    branch: str
    build_mode: str = "AUTO"  # AUTO reuses an image built from the same commit; FORCE rebuilds
    # Build this commit of the branch rather than its head (a migration builds in its target
    # region what serves in the source); None: the head.
    commit: str | None = None
    # The repository's token or deploy key, sealed with the build key that only the control
    # panel and the builders hold (regio_common.sealing): never in clear on the bus.
    repository_access_sealed: str | None = None


class ReleaseCommand(BaseModel):
    """One command of an application's release commands, run in order before traffic moves."""

    label: str
    command: str


@register
class RolloutRequested(Message):
    """Control panel → controller: run a release on the environment's runners and route to it."""

    kind = "rollout.requested"
    topic = "commands.rollouts"

    deployment_id: UUID
    application_id: UUID
    environment_id: UUID
    release_id: UUID
    image: str
    port: int
    # The release's environment, sealed with the region key: only runner agents open it,
    # so the controller stores and forwards secrets it cannot read.
    sealed_env: str
    instances: int = 1
    memory_mb: int = 512
    hosts: list[str] = Field(default_factory=list)  # served: the primary domain first, then aliases
    redirect_hosts: list[str] = Field(default_factory=list)  # answer 301 to the primary
    https_redirect: bool = False  # plain HTTP on the served hosts is redirected to HTTPS
    health_check_path: str = "/"
    sanity_timeout_seconds: float = 60.0
    # Each runs in a one-off container of the release (its image, its environment) before
    # scaling; a non-zero exit or running past the timeout fails the deployment.
    release_commands: list[ReleaseCommand] = Field(default_factory=list)
    release_command_timeout_seconds: float = 600.0
    # Set for an environment of a region dedicated to one organisation: its instances go
    # only on runners labelled organisation=<this id>; otherwise only on runners without one.
    dedicated_to: UUID | None = None


@register
class EnvironmentHostsChanged(Message):
    """Control panel → controller: the environment's domains changed; route them to what
    runs now, without a deployment."""

    kind = "environment.hosts-changed"
    topic = "commands.environments"

    environment_id: UUID
    hosts: list[str]  # served: the primary domain first, then aliases
    redirect_hosts: list[str] = Field(default_factory=list)
    https_redirect: bool = False


@register
class EnvironmentRetired(Message):
    """Control panel → controller: the environment (or its application) was deleted. Stop
    its instances, drop its routes, forget its workload; a rollout still running fails."""

    kind = "environment.retired"
    topic = "commands.environments"

    environment_id: UUID
    # The environment left this region rather than being deleted (a migration to it rolled
    # back): no tombstone, so a later migration may bring it here again.
    moved_away: bool = False


@register
class EnvironmentScaled(Message):
    """Control panel → controller: run this many instances of what the environment serves
    now, without a deployment (a change of memory is a redeploy, since a release's size is
    part of it). Also the count for the environment's next rollouts."""

    kind = "environment.scaled"
    topic = "commands.environments"

    environment_id: UUID
    instances: int


class Traffic:
    """How a region's ingress treats an environment's hosts (EnvironmentTrafficSet.mode)."""

    SERVE = "serve"  # to the environment's instances, as usual
    HOLD = "hold"  # requests wait at the ingress: none reaches an instance, none fails
    FORWARD = "forward"  # the environment has moved to another region: sent to that region's ingress


@register
class EnvironmentTrafficSet(Message):
    """Control panel → controller of the region an environment is migrated away from.

    HOLD: the ingress keeps the environment's requests waiting (its dial retries, within its
    retry window) and sends none to the instances; EnvironmentTrafficChanged says when no
    request is in flight to them any more. SERVE: back to the instances (a cut-over given up).
    FORWARD: the environment now runs in another region: its instances here stop, and
    ``hosts`` are forwarded to ``forward_to`` (that region's ingress, the Host header kept)
    until ``forward_until``, when its route and workload here are forgotten (clients with an
    old DNS answer still arrive meanwhile)."""

    kind = "environment.traffic-set"
    topic = "commands.environments"

    environment_id: UUID
    change_id: UUID  # echoed by EnvironmentTrafficChanged
    mode: str  # Traffic.SERVE, HOLD or FORWARD
    forward_to: str | None = None  # host:port, for FORWARD
    hosts: list[str] = Field(default_factory=list)  # for FORWARD: every host forwarded
    forward_until: datetime | None = None  # for FORWARD


# --- events --------------------------------------------------------------------


@register
class EnvironmentEvent(Message):
    """Controller → control panel: something the platform did to or saw of an environment's
    instances without a deployment: a restart, a runner lost, an instance replaced or moved,
    a scale carried out or impossible. Shown as the environment's events."""

    kind = "environment.event"
    topic = "events.environments"

    environment_id: UUID
    instance_id: UUID | None = None
    # One word: restarted, scaled, replaced, moved, unplaceable, unhealthy, healthy, stopped.
    reason: str
    message: str  # one line for a person


@register
class EnvironmentTrafficChanged(Message):
    """Controller → control panel: an EnvironmentTrafficSet is in effect at the ingress. For
    HOLD, also: no request is in flight to the environment's instances any more, so nothing
    the application serves can write now."""

    kind = "environment.traffic-changed"
    topic = "events.environments"

    environment_id: UUID
    change_id: UUID
    mode: str
    error: str | None = None  # the change could not be made (the environment is unknown here, …)
    # When the controller first saw the ingress carry the change's route: from a HOLD's to the
    # FORWARD's, the environment's requests waited (a migration's write pause).
    applied_at: datetime | None = None


@register
class DeploymentCancelled(Message):
    """Control panel → builder and controller: stop working on this deployment. A build is
    stopped; a rollout ends failed the usual way (its new instances go, the previous release
    keeps serving). It may arrive before the command it cancels: remember it."""

    kind = "deployment.cancelled"
    topic = "events.deployments.cancelled"

    deployment_id: UUID
    reason: str


@register
class DeploymentLogAppended(Message):
    """Any service → control panel: lines for a deployment's log, in order."""

    kind = "deployment.log"
    topic = "events.deployments.log"

    deployment_id: UUID
    lines: list[str]


# A deployment log message's lines: a quarter of the bus's limit, whatever the lines hold
# (a line of control characters is six times its length as JSON, one of emoji four).
LOG_BATCH_BYTES = 256 * 1024


def log_batch_length(lines: Sequence[str], max_lines: int, max_bytes: int = LOG_BATCH_BYTES) -> int:
    """How many of ``lines``, from the first, go in one ``DeploymentLogAppended``: at most
    ``max_lines`` of them and ``max_bytes`` of JSON, and at least one (its producer bounds a
    line's length)."""
    total = 0
    for n, line in enumerate(lines[:max_lines]):
        total += len(json.dumps(line, ensure_ascii=False).encode()) + 1  # and its comma
        if n and total > max_bytes:
            return n
    return min(len(lines), max_lines)


@register
class BuildStarted(Message):
    kind = "build.started"
    topic = "events.builds.started"

    deployment_id: UUID
    build_id: UUID


@register
class BuildFinished(Message):
    kind = "build.finished"
    topic = "events.builds.finished"

    deployment_id: UUID
    build_id: UUID
    success: bool
    commit: str | None = None
    image: str | None = None  # image id (sha256:…), immutable
    exposed_port: int | None = None
    reused: bool = False
    error: str | None = None
    # How long the builder worked on it, for the build minutes metered (usage kind "build").
    build_seconds: float | None = None


@register
class InstanceUsageMetered(Message):
    """A runner agent's meter: ``instance_id`` ran from ``segment_start`` to ``segment_end``
    (Docker's own start and finish times of its container), inside one metering period. A run
    is cut at every period's end and at its own end, and each piece is sent once its end is
    known; ``segment_start`` never repeats for an instance, so the control panel records each
    piece once however often it arrives (its key: the instance and the segment's start)."""
    kind = "usage.instance"
    topic = "events.usage.instances"

    instance_id: UUID
    environment_id: UUID
    runner: str
    memory_mb: int
    segment_start: datetime
    segment_end: datetime


@register
class TrafficMetered(Message):
    """An ingress's meter: what it served for one environment in one metering period (from
    its access log), sent once the period has ended. The key: ingress, environment, period."""
    kind = "usage.traffic"
    topic = "events.usage.traffic"

    environment_id: UUID
    ingress: str  # the ingress node that served it
    period_start: datetime
    period_end: datetime
    requests: int
    bytes_served: int  # response bytes sent to clients


@register
class RolloutProgressed(Message):
    """Controller → control panel: a pipeline step started."""

    kind = "rollout.progressed"
    topic = "events.rollouts.progressed"

    deployment_id: UUID
    step: str  # release commands, scaling, sanity tests, finalizing
    percent: int


@register
class RolloutFinished(Message):
    kind = "rollout.finished"
    topic = "events.rollouts.finished"

    deployment_id: UUID
    environment_id: UUID
    success: bool
    error: str | None = None


class Upstream(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: UUID
    address: str  # host:port published by the runner on its own address


@register
class RoutesChanged(Message):
    """Controller → ingress: the full route of one environment (level, not delta)."""

    kind = "routes.changed"
    topic = "events.routes.changed"

    environment_id: UUID
    hosts: list[str]  # served: the primary domain first, then aliases
    upstreams: list[Upstream]
    revision: int  # grows with every change of this environment's route
    # Answer a 301 to the primary domain, path and query kept; never proxied.
    redirect_hosts: list[str] = Field(default_factory=list)
    https_redirect: bool = False  # plain HTTP on `hosts` answers a redirect to HTTPS
    # The environment's traffic is held (Traffic.HOLD): requests to `hosts` wait at the ingress,
    # retrying, until a later revision gives them upstreams again; `upstreams` is then empty.
    held: bool = False


@register
class RoutesApplied(Message):
    """Ingress → controller: the proxy now carries this revision of an environment's route."""

    kind = "routes.applied"
    topic = "events.routes.applied"

    environment_id: UUID
    revision: int


# --- commands the control panel sends itself (appended) ------------------------


@register
class BackupRequested(Message):
    """Control panel → itself: dump the databases and copy the buckets of a backup into the
    region's object storage. Through the outbox and a durable consumer, like provisioning."""

    kind = "backup.requested"
    topic = "commands.backups"

    backup_id: UUID


@register
class BackupRestoreRequested(Message):
    """Control panel → itself: put a backup's service-instance backups back into an
    environment's databases and buckets, replacing what they hold."""

    kind = "backup-restore.requested"
    topic = "commands.restores"

    restore_id: UUID


@register
class BackupFilesDeletionRequested(Message):
    """Control panel → itself: the environment of some backups was deleted; delete their files
    from a storage service's backup bucket (retried while the storage does not answer)."""

    kind = "backup-files.deletion-requested"
    topic = "commands.backup-deletions"

    storage_service_id: UUID
    prefixes: list[str]  # one per backup: every key of its parts starts with it


@register
class ServiceDataDeletionRequested(Message):
    """Control panel → itself: the environment of a service instance was deleted; delete its
    database or bucket on the service's server (retried while the server does not answer)."""

    kind = "service-data.deletion-requested"
    topic = "commands.service-deletions"

    service_id: UUID
    credentials: str  # as stored on the instance: encrypted with the control panel's key


# --- what could not be published or handled ------------------------------------


@register
class MessageSetAside(Message):
    """Any service → the region's dead letters (``bus.DEAD_LETTERS``): a message it could not
    publish (too big for the server, refused by the stream) or handle (its delivery limit
    reached), set aside with the reason so that everything behind it flows on. The control
    panel fails the deployment it belonged to when a platform service of that deployment's
    region set it aside (never on a runner agent's word); ``regio dead-letters`` lists them
    all. Never the message itself: it may be what was too big, and it may carry sealed secrets."""

    kind = "message.set-aside"
    topic = "dead-letters"

    service: str  # that set it aside
    message_subject: str
    message_kind: str
    message_id: str  # its Nats-Msg-Id header, as it was
    size_bytes: int
    reason: str  # one line for an operator
    consumer: str | None = None  # the durable that could not handle it; None: never published
    stream_sequence: int | None = None  # where it is kept, for one that was published
    deployment_id: UUID | None = None  # what it belonged to, when it says
    environment_id: UUID | None = None

    def subject(self, region: str) -> str:
        return f"region.{region}.{self.topic}.{self.service}"
