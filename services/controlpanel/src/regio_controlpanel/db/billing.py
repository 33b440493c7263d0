"""The control panel's billing schema: plans and their prices, each application's
subscriptions, the usage metered in the regions, organisations' billing details and quotas,
and the invoices made from them (services/subscriptions.py, usage.py, invoices.py).

Money is Numeric, never float. Subscriptions, usage events and invoices keep the ids of
applications and organisations without foreign keys to applications: an application that is
deleted is still billed for the part of the month it ran."""
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Plan(Base):
    """One plan of a plan group (Developer, Starter, Business): its limits and what its price
    includes. The group's first plan (by position) is the one a new application gets."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("plan_group_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    plan_group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plan_groups.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_free: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    memory_sizes_mb: Mapped[list] = mapped_column(JSON)  # the instance sizes allowed, e.g. [256, 512]
    max_instances: Mapped[int] = mapped_column(Integer, default=1)  # per environment
    # The environments (by slug) that may run more than one instance; null: every one.
    scalable_environments: Mapped[list | None] = mapped_column(JSON)
    # The services (by identifier, e.g. postgres-18) allowed; null: every one the region offers.
    services: Mapped[list | None] = mapped_column(JSON)
    custom_domains: Mapped[bool] = mapped_column(Boolean, default=True)
    # Recorded now, enforced when environments can sleep: idle for this long, it sleeps.
    sleeps_when_idle: Mapped[bool] = mapped_column(Boolean, default=False)
    sleep_after_seconds: Mapped[int | None] = mapped_column(Integer)
    # Usage kind -> quantity per month the price includes, in the kind's billing unit
    # (domain/usage.py); what is used beyond it is invoiced at the price list's rate.
    included: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _created()


class PlanPrice(Base):
    """A plan's price per month, in one currency, in one region (null: every region without a
    price of its own). A plan with no price in the invoice's currency costs nothing."""

    __tablename__ = "plan_prices"
    __table_args__ = (UniqueConstraint("plan_id", "region_id", "currency", postgresql_nulls_not_distinct=True),)
    id: Mapped[uuid.UUID] = _id()
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(3))
    monthly: Mapped[Decimal] = mapped_column(Numeric(12, 2))


class UsagePrice(Base):
    """The price of one billing unit of a usage kind (domain/usage.py: a GB-hour of instance
    memory, a GB-hour of storage, a million requests, a GB served, a build minute) beyond what
    a plan includes, in one currency and region (null: every region without its own)."""

    __tablename__ = "usage_prices"
    __table_args__ = (UniqueConstraint("kind", "region_id", "currency", postgresql_nulls_not_distinct=True),)
    id: Mapped[uuid.UUID] = _id()
    kind: Mapped[str] = mapped_column(String(32))
    region_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(3))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(14, 6))


class OrganisationBilling(Base):
    """An organisation's billing details (its own to edit) and its currency, tax rate and
    quotas (the operator's). No row: the operator's defaults (settings), no quotas."""

    __tablename__ = "organisation_billing"
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                       primary_key=True)
    # The organisation's owners, admins and billing members edit these.
    company_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    address: Mapped[str] = mapped_column(Text, default="", server_default="")
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    vat_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # The operator's: an organisation may not lower its own tax.
    currency: Mapped[str | None] = mapped_column(String(3))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4), default=Decimal(0), server_default="0")  # 0.081: 8.1 %
    # Quotas, null: none. Instances count every environment's configured instances; service
    # GB the last measured size of its databases and buckets.
    max_applications: Mapped[int | None] = mapped_column(Integer)
    max_free_applications: Mapped[int | None] = mapped_column(Integer)
    max_instances: Mapped[int | None] = mapped_column(Integer)
    max_service_gb: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Subscription(Base):
    """An application on a plan in a region, from ``started_at`` until ``ended_at`` (null: now).
    A change of plan ends one and starts the next at the same instant; so does a migration to
    another region, and deleting the application ends its last."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("one_open_subscription", "application_id", unique=True,
                            postgresql_where=text("ended_at IS NULL")),
                      Index("ix_subscriptions_organisation", "organisation_id", "started_at"))
    id: Mapped[uuid.UUID] = _id()
    application_id: Mapped[uuid.UUID] = mapped_column(index=True)
    organisation_id: Mapped[uuid.UUID]
    application_name: Mapped[str] = mapped_column(String(200))  # as it was: invoiced after a deletion
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id"))
    region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("regions.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(254))  # who started it (email), or "platform"


class UsageEvent(Base):
    """One measurement of usage, as the regions' meters reported it. ``id`` is the cursor an
    external billing system follows: rows are inserted under a lock so that they commit in id
    order (services/usage.py), and none is ever changed. ``key`` names what measured it and
    when, so a measurement reported twice is recorded once."""

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_application", "application_id", "period_start"),
                      Index("ix_usage_events_organisation", "organisation_id", "period_start"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    organisation_id: Mapped[uuid.UUID]
    application_id: Mapped[uuid.UUID]
    environment_id: Mapped[uuid.UUID | None]
    service_instance_id: Mapped[uuid.UUID | None]
    region_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(32))  # domain/usage.py: instance, requests, …
    memory_mb: Mapped[int | None] = mapped_column(Integer)  # an instance's size
    quantity: Mapped[Decimal] = mapped_column(Numeric(24, 6))  # in the kind's recorded unit
    unit: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = _created()


class Invoice(Base):
    """An organisation's invoice for one calendar month (UTC). Made once: its lines and
    totals never change after."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("organisation_id", "period_start"),)
    id: Mapped[uuid.UUID] = _id()
    number: Mapped[str] = mapped_column(String(32), unique=True)  # R-202611-000001: R-YYYYMM- and a sequence
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4))
    tax: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    billing_details: Mapped[dict] = mapped_column(JSON, default=dict)  # as they were when it was made
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    id: Mapped[uuid.UUID] = _id()
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # subscription, usage
    application_id: Mapped[uuid.UUID | None]
    application_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(Numeric(24, 6))
    unit: Mapped[str] = mapped_column(String(32))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeletedEnvironment(Base):
    """An environment deleted (with its application, or alone), remembered for its meters:
    its containers stop after the deletion, and their last usage arrives after it. Without
    its row the usage could not be put on its organisation's bill (services/usage.py)."""

    __tablename__ = "deleted_environments"
    environment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    application_id: Mapped[uuid.UUID]
    organisation_id: Mapped[uuid.UUID]
    region_id: Mapped[uuid.UUID]
    deleted_at: Mapped[datetime] = _created()
