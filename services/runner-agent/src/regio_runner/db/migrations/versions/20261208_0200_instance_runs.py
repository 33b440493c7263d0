"""Instance runs: the instance meter's record of each run of an instance's container (Docker's
StartedAt to FinishedAt) and how far it was metered (InstanceUsageMetered, through the outbox).

Revision ID: 20261208_0200
Revises: 20261126_1900
Create Date: 2026-12-08 02:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261208_0200"
down_revision = "20261126_1900"
branch_labels = None
depends_on = None

SCHEMA = "runner"


def upgrade() -> None:
    op.create_table(
        "instance_runs",
        sa.Column("container_id", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("runner", sa.String(255), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("metered_until", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_instance_runs_runner", "instance_runs", ["runner"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("instance_runs", schema=SCHEMA)
