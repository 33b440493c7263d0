"""What the controller and runner agents exchange through JetStream key-value buckets.

Both are full state, never deltas (level-triggered): the controller writes each
runner's complete desired instance list under the runner's name in
``<region>-runner-desired``; each runner agent writes its complete observed state,
every container it runs, as a heartbeat under its name in ``<region>-runner-state``.
A missed or repeated update heals at the next write."""
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


class RunnerDesired(BaseModel):
    runner: str
    revision: int  # grows with each write by the controller
    instances: list[DesiredInstance] = Field(default_factory=list)


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
    restarts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None


class RunnerHeartbeat(BaseModel):
    runner: str
    address: str  # where the ingress and the controller reach this runner's published ports
    memory_mb: int
    cpus: float
    labels: dict[str, str] = Field(default_factory=dict)
    desired_revision: int = 0  # the last desired revision this runner has acted on
    instances: list[ObservedInstance] = Field(default_factory=list)
    sent_at: datetime = Field(default_factory=utcnow)
