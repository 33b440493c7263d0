"""The usage ledger as the API shows it: its events in id order, and an application's month
per usage kind. Quantities are strings (exact decimals)."""
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field


class UsageEventOut(BaseModel):
    id: int = Field(description="The ledger's cursor: events are listed, and only ever added, in id order.")
    key: str = Field(description="What measured it and when; a measurement reported twice is recorded once.")
    organisation: UUID
    application: UUID
    environment: UUID | None
    service_instance: UUID | None
    region: UUID = Field(description="The region that measured it (whose prices apply).")
    kind: str = Field(description="instance, database_storage, bucket_storage, requests, bytes_served or build.")
    memory_mb: int | None = Field(description="An instance's size (kind instance).")
    quantity: str = Field(description="In the kind's recorded unit.")
    unit: str
    period_start: datetime
    period_end: datetime
    recorded_at: datetime


class UsageEventsOut(BaseModel):
    results: list[UsageEventOut]
    next_after: int | None = Field(description="Pass as `after` for the next events: the last id listed, or the "
                                               "`after` given when none were.")


class UsageOfKind(BaseModel):
    kind: str
    label: str
    quantity: str = Field(description="The month's measurements summed, in the recorded unit.")
    unit: str
    billed_quantity: str = Field(description="The same in the unit prices and plans' inclusions are in.")
    billing_unit: str


class ApplicationUsageOut(BaseModel):
    application: UUID
    period: str = Field(description="YYYY-MM, a calendar month in UTC.")
    period_start: datetime
    period_end: datetime
    usage: list[UsageOfKind] = Field(description="Every usage kind, measured in the month (by each measurement's "
                                                 "start), zero when none was.")
