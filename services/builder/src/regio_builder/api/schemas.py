from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class BuildOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    deployment_id: UUID
    application_id: UUID
    branch: str
    build_mode: str
    state: str
    requested_commit: str | None
    commit: str | None
    image: str | None
    image_tag: str | None
    exposed_port: int | None
    reused: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
