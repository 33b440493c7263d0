"""Cancelled deployments: the control panel now cancels a deployment (a user's request, or a
newer deployment superseding a queued one). The builder stops its build, and remembers the
deployment, because the cancel may arrive before the BuildRequested it cancels.

Revision ID: 20261126_1530
Revises: 20261126_1200
Create Date: 2026-11-26 15:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1530"
down_revision = "20261126_1200"
branch_labels = None
depends_on = None

SCHEMA = "builder"


def upgrade() -> None:
    op.create_table(
        "cancelled_deployments",
        sa.Column("deployment_id", sa.Uuid(), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("cancelled_deployments", schema=SCHEMA)
