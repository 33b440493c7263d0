"""Retired environments: the control panel now tells the controller when an environment is
deleted, and the controller forgets its workload. A tombstone per environment keeps a
command sent before the deletion but handled after it (commands of one environment
arrive through several consumers) from bringing the environment back.

Revision ID: 20261126_1445
Revises: 20261126_1200
Create Date: 2026-11-26 14:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1445"
down_revision = "20261126_1200"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.create_table(
        "retired_environments",
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("environment_id", name="pk_retired_environments"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("retired_environments", schema=SCHEMA)
