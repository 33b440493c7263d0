"""Bodies of invoices and of the running month's estimate. Money is a decimal string."""
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, Field


class InvoiceLineOut(BaseModel):
    kind: str = Field(description="subscription (a plan, prorated) or usage (beyond what the plan includes)")
    application: UUID | None
    application_name: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    period_start: datetime | None
    period_end: datetime | None


class InvoiceSummaryOut(BaseModel):
    uuid: UUID
    number: str
    organisation: UUID
    period_start: datetime
    period_end: datetime
    currency: str
    subtotal: Decimal
    tax_rate: Decimal = Field(description="0.081: 8.1 %")
    tax: Decimal
    total: Decimal
    issued_at: datetime


class InvoiceOut(InvoiceSummaryOut):
    billing_details: dict = Field(description="The organisation's billing details as they were when it was made.")
    lines: list[InvoiceLineOut]


class EstimateOut(BaseModel):
    organisation: UUID
    period_start: datetime
    period_end: datetime = Field(description="Now: the estimate covers the month so far.")
    currency: str
    lines: list[InvoiceLineOut]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
