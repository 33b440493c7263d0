"""Bodies of the backup, restore and download endpoints, with Divio's field names."""
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from ..domain.backups import DEFAULT_TRIGGER
from .schemas import Input

STATE = "PENDING, then WORKING, then COMPLETED."
SUCCESS = "null until COMPLETED, then SUCCESS or FAILURE."


class BackupIn(Input):
    environment: UUID
    services: list[UUID] | None = Field(None, description=(
        "Service instances of the environment to back up; all its provisioned ones when left out."))
    trigger: str = Field(DEFAULT_TRIGGER, max_length=32, description="Why it was taken, e.g. MANUAL.")
    notes: str = Field("", max_length=2000)
    scheduled_for_deletion_at: datetime | None = Field(None, description=(
        "Sent by the divio client; recorded and shown, nothing deletes backups yet."))


class BackupOut(BaseModel):
    uuid: UUID
    environment: UUID
    state: str = Field(description=STATE)
    success: str | None = Field(description=SUCCESS)
    trigger: str
    notes: str
    created_at: datetime
    ended_at: datetime | None
    scheduled_for_deletion_at: datetime | None
    service_instance_backups: list[UUID]


class ServiceInstanceBackupOut(BaseModel):
    uuid: UUID
    backup: UUID
    service_instance: UUID | None = Field(description="null once the instance is removed; the backup stays.")
    type: str = Field(description="DATABASE (a pg_dump file) or STORAGE (the bucket's objects).")
    service_type: str = Field(description="The same as type, under the divio client's name.")
    prefix: str
    state: str = Field(description=STATE)
    success: str | None = Field(description=SUCCESS)
    size: int | None = Field(description="Bytes kept, once it succeeded.")
    error: str | None = Field(description="Why it failed.")
    errors: str | None = Field(description="The same as error, under the divio client's name.")
    created_at: datetime
    ended_at: datetime | None


class BackupRestoreIn(Input):
    backup: UUID
    service_instance_backups: list[UUID] | None = Field(None, description=(
        "Which parts of the backup to restore; all that succeeded when left out."))
    environment: UUID | None = Field(None, description=(
        "Where to restore: the backup's own environment when left out. Each part goes into the "
        "environment's provisioned instance of the same type and prefix, replacing its data."))


class BackupRestoreOut(BaseModel):
    uuid: UUID
    backup: UUID
    environment: UUID
    state: str = Field(description=STATE)
    success: str | None = Field(description=SUCCESS)
    error: str | None = Field(description="Why a part failed, for each that did.")
    created_at: datetime
    ended_at: datetime | None
    service_instance_backups: list[UUID]


class BackupDownloadIn(Input):
    backup: UUID
    service_instance_backups: list[UUID] | None = Field(None, description=(
        "Which parts of the backup to download; all that succeeded when left out."))
    trigger: str = Field(DEFAULT_TRIGGER, max_length=32)


class PartDownload(BaseModel):
    service_instance_backup: UUID
    download_url: str


class BackupDownloadOut(BaseModel):
    uuid: UUID
    backup: UUID
    service_instance_backups: list[UUID]
    trigger: str
    created_at: datetime
    expires_at: datetime
    download_url: str = Field(description=(
        "Fetched without credentials until expires_at. One service instance backup: a database's pg_dump file "
        "(custom format, for pg_restore) or a tar of a storage's objects at their keys. Several: one tar with "
        "database-<PREFIX>.dump and storage-<PREFIX>/<key> for each."))
    downloads: list[PartDownload] = Field(description="A URL of its own for each service instance backup.")


class BackupDownloadServiceInstanceOut(BaseModel):
    """One part of a download link, as Divio's client polls it (`divio app pull`). A link is
    ready when it is made, so its parts are COMPLETED from the start."""
    uuid: UUID
    backup_download: UUID
    service_instance_backup: UUID
    state: str = Field(description=STATE)
    success: str | None = Field(description=SUCCESS)
    errors: str | None = Field(description="Always null: a part that failed to back up cannot be downloaded.")
    created_at: datetime
    ended_at: datetime | None
    expires_at: datetime
    download_url: str = Field(description="Fetched without credentials until expires_at.")
