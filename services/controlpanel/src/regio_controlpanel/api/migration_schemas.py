"""Bodies of /apps/v3/application-migrations/."""
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from .schemas import DeploymentStep, Input


class MigrationIn(Input):
    application: UUID
    region: UUID = Field(description="The region to move the application, its environments and services to.")


class MigrationCancel(Input):
    reason: str = Field("", max_length=500)


class DnsChange(BaseModel):
    domain: str
    point_to: str = Field(description="The target region's ingress: where the domain's DNS should now point.")


class MigrationEnvironmentOut(BaseModel):
    environment: UUID
    deployment: UUID | None = Field(description="Its deployment in the target region (none: nothing served).")
    write_pause_ms: int | None


class MigrationOut(BaseModel):
    uuid: UUID
    application: UUID
    source_region: UUID
    target_region: UUID
    status: str
    success: bool | None
    error: str | None
    steps: list[DeploymentStep]
    environments: list[MigrationEnvironmentOut]
    write_pause_ms: int | None = Field(description="How long writes were paused at the cut-over: requests were "
                                                   "held at the ingress, none failed.")
    dns_changes: list[DnsChange] = Field(description="Custom domains whose DNS should point to the target now.")
    cut_over_at: datetime | None
    grace_until: datetime | None = Field(description="Until then the old region forwards the application's hosts "
                                                     "and keeps its detached databases and buckets.")
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class MigrationLog(BaseModel):
    uuid: UUID
    logs: str
    next_offset: int = Field(description="Pass as ?offset= to read only what was appended since.")
    next: str
    ended: bool
