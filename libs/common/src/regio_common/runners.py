"""What the controller and runner agents exchange through JetStream key-value buckets.

Both are full state, never deltas (level-triggered): the controller writes each
runner's complete desired instance and job lists under the runner's name in
``<region>-runner-desired``; each runner agent writes its complete observed state,
every container it runs, as a heartbeat under its name in ``<region>-runner-state``.
A missed or repeated update heals at the next write.

Instances run until they are no longer desired and are restarted when they exit.
Jobs (a release command) run once to their end and are never restarted: while one is
desired its runner reports how it ended, and once it is no longer desired its container goes."""
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, Field

from .messages import utcnow


class DesiredInstance(BaseModel):
    instance_id: UUID
    environment_id: UUID
    release_id: UUID
    image: str
    port: int  # the port the application listens on inside its container
    sealed_env: str  # the release's environment, sealed with the region key
    memory_mb: int = 512
    cpus: float = 0.25


class DesiredJob(BaseModel):
    """A one-off container of a release that runs ``command`` with ``sh -c`` once."""

    job_id: UUID
    deployment_id: UUID  # whose log its output goes to
    environment_id: UUID
    release_id: UUID
    label: str  # prefixes each line of its output in the deployment log
    image: str
    command: str
    sealed_env: str  # the release's environment, sealed with the region key
    memory_mb: int = 512
    cpus: float = 0.25
    timeout_seconds: float = 600.0  # killed when it runs longer, and reported timed out


class RunnerDesired(BaseModel):
    runner: str
    revision: int  # grows with each write by the controller
    instances: list[DesiredInstance] = Field(default_factory=list)
    jobs: list[DesiredJob] = Field(default_factory=list)


class ContainerState(StrEnum):
    STARTING = "starting"  # created, not yet running
    RUNNING = "running"
    EXITED = "exited"  # stopped on its own: crashed, killed, finished
    STOPPING = "stopping"


class ObservedInstance(BaseModel):
    instance_id: UUID
    environment_id: UUID
    release_id: UUID
    container_id: str
    state: ContainerState
    address: str | None = None  # host:port the runner publishes on its own address
    restarts: int = 0  # how often the runner restarted it after it exited
    exit_code: int | None = None
    started_at: datetime | None = None
    # How its last run ended, for a person ("exit code 137, out of memory"); None if it never ended.
    last_exit: str | None = None


class JobState(StrEnum):
    RUNNING = "running"  # started, or its output is still being shipped
    EXITED = "exited"  # ended, and all its output shipped to the deployment log


class ObservedJob(BaseModel):
    job_id: UUID
    state: JobState
    exit_code: int | None = None  # None once exited: it never ran, or its container was lost (see error)
    timed_out: bool = False  # killed by its runner for running past its timeout
    error: str | None = None  # why it has no exit code
    finished_at: datetime | None = None


class ShippedLog(BaseModel):
    """How far an instance's log lines were shipped: the time of its last line of output, and
    of its last platform line (started, exited, stopped)."""

    output: datetime | None = None
    event: datetime | None = None


class RunnerHeartbeat(BaseModel):
    runner: str
    address: str  # where the ingress and the controller reach this runner's published ports
    memory_mb: int
    cpus: float
    labels: dict[str, str] = Field(default_factory=dict)
    desired_revision: int = 0  # the last desired revision this runner has acted on
    instances: list[ObservedInstance] = Field(default_factory=list)
    jobs: list[ObservedJob] = Field(default_factory=list)  # every job it holds a container or a record of
    # Instance id -> how far its log lines were shipped: read back by this runner's next agent,
    # which may read its own heartbeat but not the region's logs (nats_auth).
    shipped: dict[UUID, ShippedLog] = Field(default_factory=dict)
    sent_at: datetime = Field(default_factory=utcnow)
