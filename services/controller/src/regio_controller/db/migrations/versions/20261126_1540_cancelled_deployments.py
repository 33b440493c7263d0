"""Cancelled deployments: the control panel now cancels a deployment (a user's request, or a
newer deployment superseding a queued one), and the controller ends its rollout failed. The
cancel is an event and the rollout request a command, so the cancel may arrive first: a row
per cancelled deployment makes the request arriving after it end failed instead of running.

Revision ID: 20261126_1540
Revises: 20261126_1445
Create Date: 2026-11-26 15:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1540"
down_revision = "20261126_1445"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.create_table(
        "cancelled_deployments",
        sa.Column("deployment_id", sa.Uuid, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_cancelled_deployments"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("cancelled_deployments", schema=SCHEMA)
