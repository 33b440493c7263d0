"""Bodies of plans, subscriptions and organisations' billing details. Prices are set only
for callers who may see them (owners, admins, billing members); the routes answer with the
unset fields left out, so a member's response has no price field at all."""
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, Field

from .schemas import Input, Update


class PlanPriceOut(BaseModel):
    currency: str
    region: UUID | None = Field(description="null: every region without a price of its own")
    monthly: Decimal


class PlanOut(BaseModel):
    uuid: UUID
    plan_group: UUID
    name: str
    is_free: bool
    memory_sizes_mb: list[int]
    max_instances: int = Field(description="per environment")
    scalable_environments: list[str] | None = Field(
        description="The environments (slugs) that may run more than one instance; null: every one.")
    services: list[str] | None = Field(description="The services (identifiers) allowed; null: every one offered.")
    custom_domains: bool
    sleeps_when_idle: bool
    sleep_after_seconds: int | None
    included: dict[str, float] = Field(description="Usage included per month, per kind, in its billing unit.")
    prices: list[PlanPriceOut] | None = Field(None, description="Only for owners, admins and billing members.")


class PlanGroupOut(BaseModel):
    uuid: UUID
    name: str
    regions: list[UUID] = Field(description="The regions its applications may be put in, among those the caller "
                                            "(or, with ?organisation=, that organisation) may use.")
    is_free: bool = Field(description="The free plan group: it deploys only to regions marked free_plan.")
    plans: list[PlanOut] = Field(description="Its plans, the one a new application gets first.")


class SubscriptionIn(Input):
    application: UUID
    plan: UUID


class SubscriptionOut(BaseModel):
    uuid: UUID
    application: UUID
    plan: UUID
    plan_name: str
    plan_group: UUID
    region: UUID
    started_at: datetime
    ended_at: datetime | None
    changed_by: str
    monthly: Decimal | None = Field(None, description="The plan's price per month here; billing roles only.")
    currency: str | None = Field(None, description="billing roles only")


class BillingDetailsOut(BaseModel):
    organisation: UUID
    company_name: str
    address: str
    email: str
    vat_id: str
    currency: str = Field(description="Set by the operator.")
    tax_rate: Decimal = Field(description="Set by the operator: 0.081 is 8.1 %.")
    max_applications: int | None = Field(description="Quota set by the operator; null: none.")
    max_free_applications: int | None
    max_instances: int | None
    max_service_gb: Decimal | None


class BillingDetailsUpdate(Update):
    company_name: str = Field(None, max_length=200)
    address: str = Field(None, max_length=2000)
    email: str = Field(None, max_length=254)
    vat_id: str = Field(None, max_length=64)
