"""Bodies of the service catalogue and service instance endpoints, with Divio's field names."""
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from ..domain.service_instances import DEFAULT_PREFIX
from .schemas import Input


class ServiceOut(BaseModel):
    uuid: UUID
    name: str
    type: str = Field(description="DATABASE or STORAGE.")
    description: str
    identifier: str = Field(description="Stable name of the offering, e.g. postgres-18 or s3.")
    version: str
    region: UUID


class ServiceInstanceIn(Input):
    environment: UUID
    service: UUID
    region: UUID | None = Field(None, description="If given, the application's region.")
    prefix: str = Field(DEFAULT_PREFIX, max_length=63, description=(
        "Names the variables a release gets (<PREFIX>_DATABASE_DSN, <PREFIX>_STORAGE_DSN): uppercase "
        "letters, digits and underscores, starting with a letter."))


class ServiceInstanceOut(BaseModel):
    uuid: UUID
    prefix: str
    type: str = Field(description="The service's type: DATABASE or STORAGE.")
    service_status: str = Field(description=(
        "NEW until the next deployment provisions it (PROVISIONING), then ATTACHED; DETACHED keeps its "
        "data out of new releases; REMOVED once deleted."))
    region: UUID
    service: UUID
    environment: UUID
    created_at: datetime
