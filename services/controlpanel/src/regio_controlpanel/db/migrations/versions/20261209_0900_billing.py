"""Billing: plans inside plan groups with their prices, the price list for usage, each
application's subscriptions, usage events, organisations' billing details and quotas, and
invoices (db/billing.py).

Existing data: every plan group becomes a group of one plan with its limits (free of
charge: the operator prices it), every application is subscribed, from this upgrade on (no
month before it is billed), to its group's plan (one on no plan group to the free group's, and put in that group), and the
groups' own limit columns go: the plans hold them now.

Revision ID: 20261209_0900
Revises: 20261208_1000
Create Date: 2026-12-09 09:00:00
"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = "20261209_0900"
down_revision = "20261208_1000"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"
SIZES = (256, 512, 1024, 2048, 4096)  # the memory sizes as they were at this revision


def _fk(column: str, table: str, ondelete: str | None = None) -> sa.Column:
    return sa.Column(column, sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.{table}.id", ondelete=ondelete))


def upgrade() -> None:
    now = sa.func.now()
    op.create_table(
        "plans",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("plan_group_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.plan_groups.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_free", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("memory_sizes_mb", sa.JSON(), nullable=False),
        sa.Column("max_instances", sa.Integer(), nullable=False),
        sa.Column("scalable_environments", sa.JSON()),
        sa.Column("services", sa.JSON()),
        sa.Column("custom_domains", sa.Boolean(), nullable=False),
        sa.Column("sleeps_when_idle", sa.Boolean(), nullable=False),
        sa.Column("sleep_after_seconds", sa.Integer()),
        sa.Column("included", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.UniqueConstraint("plan_group_id", "name"),
        schema=SCHEMA)
    op.create_table(
        "plan_prices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("plan_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.plans.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        _fk("region_id", "regions", "CASCADE"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("monthly", sa.Numeric(12, 2), nullable=False),
        sa.UniqueConstraint("plan_id", "region_id", "currency", postgresql_nulls_not_distinct=True),
        schema=SCHEMA)
    op.create_table(
        "usage_prices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        _fk("region_id", "regions", "CASCADE"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("unit_price", sa.Numeric(14, 6), nullable=False),
        sa.UniqueConstraint("kind", "region_id", "currency", postgresql_nulls_not_distinct=True),
        schema=SCHEMA)
    op.create_table(
        "organisation_billing",
        sa.Column("organisation_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.organisations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("company_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("address", sa.Text(), nullable=False, server_default=""),
        sa.Column("email", sa.String(254), nullable=False, server_default=""),
        sa.Column("vat_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("currency", sa.String(3)),
        sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False, server_default="0"),
        sa.Column("max_applications", sa.Integer()),
        sa.Column("max_free_applications", sa.Integer()),
        sa.Column("max_instances", sa.Integer()),
        sa.Column("max_service_gb", sa.Numeric(12, 3)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=SCHEMA)
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("application_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("application_name", sa.String(200), nullable=False),
        sa.Column("plan_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.plans.id"), nullable=False),
        sa.Column("region_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.regions.id"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("changed_by", sa.String(254), nullable=False),
        schema=SCHEMA)
    op.create_index("one_open_subscription", "subscriptions", ["application_id"], unique=True, schema=SCHEMA,
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.create_index("ix_subscriptions_organisation", "subscriptions", ["organisation_id", "started_at"],
                    schema=SCHEMA)
    op.create_table(
        "usage_events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("application_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid()),
        sa.Column("service_instance_id", sa.Uuid()),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("memory_mb", sa.Integer()),
        sa.Column("quantity", sa.Numeric(24, 6), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=SCHEMA)
    op.create_index("ix_usage_events_application", "usage_events", ["application_id", "period_start"], schema=SCHEMA)
    op.create_index("ix_usage_events_organisation", "usage_events", ["organisation_id", "period_start"],
                    schema=SCHEMA)
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("organisation_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.organisations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", sa.Numeric(12, 2), nullable=False),
        sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False),
        sa.Column("tax", sa.Numeric(12, 2), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("billing_details", sa.JSON(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("organisation_id", "period_start"),
        schema=SCHEMA)
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey(f"{SCHEMA}.invoices.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("application_id", sa.Uuid()),
        sa.Column("application_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(24, 6), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("unit_price", sa.Numeric(14, 6), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True)),
        sa.Column("period_end", sa.DateTime(timezone=True)),
        schema=SCHEMA)
    _plans_from_plan_groups()
    op.drop_column("plan_groups", "max_instances", schema=SCHEMA)
    op.drop_column("plan_groups", "memory_mb", schema=SCHEMA)


def _plans_from_plan_groups() -> None:
    connection = op.get_bind()
    groups = connection.execute(sa.text(
        f"SELECT id, name, max_instances, memory_mb, is_free FROM {SCHEMA}.plan_groups")).all()
    plan_of = {}
    for group_id, name, max_instances, memory_mb, is_free in groups:
        plan_of[group_id] = uuid.uuid4()
        connection.execute(sa.text(
            f"INSERT INTO {SCHEMA}.plans (id, plan_group_id, name, position, is_free, memory_sizes_mb, max_instances,"
            " custom_domains, sleeps_when_idle, sleep_after_seconds, included)"
            " VALUES (:id, :group, :name, 0, :free, CAST(:sizes AS json), :max, :domains, :free,"
            " :sleep, CAST('{}' AS json))"),
            {"id": plan_of[group_id], "group": group_id, "name": name, "free": is_free,
             "sizes": str([s for s in SIZES if s <= memory_mb] or [SIZES[0]]), "max": max_instances,
             "domains": not is_free, "sleep": 900 if is_free else None})
    free_group = next((g[0] for g in groups if g[4]), None)
    if free_group is not None:  # an application on no plan group had the free plan's limits
        connection.execute(sa.text(f"UPDATE {SCHEMA}.applications SET plan_group_id = :g WHERE plan_group_id IS NULL"),
                           {"g": free_group})
    for app_id, org_id, name, region_id, group_id in connection.execute(sa.text(
            f"SELECT id, organisation_id, name, region_id, plan_group_id FROM {SCHEMA}.applications"
            " WHERE plan_group_id IS NOT NULL")).all():
        connection.execute(sa.text(
            f"INSERT INTO {SCHEMA}.subscriptions (id, application_id, organisation_id, application_name, plan_id,"
            " region_id, started_at, changed_by) VALUES (:id, :app, :org, :name, :plan, :region, now(), 'platform')"),
            {"id": uuid.uuid4(), "app": app_id, "org": org_id, "name": name, "plan": plan_of[group_id],
             "region": region_id})


def downgrade() -> None:
    op.add_column("plan_groups", sa.Column("max_instances", sa.Integer(), nullable=False, server_default="1"),
                  schema=SCHEMA)
    op.add_column("plan_groups", sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="512"),
                  schema=SCHEMA)
    for table in ("invoice_lines", "invoices", "usage_events", "subscriptions", "organisation_billing",
                  "usage_prices", "plan_prices", "plans"):
        op.drop_table(table, schema=SCHEMA)
