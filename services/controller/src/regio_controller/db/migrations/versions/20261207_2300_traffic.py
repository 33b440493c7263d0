"""A workload's traffic mode (serve, hold, forward) during a migration's cut-over, and whether
the control panel was told it is in effect.

Revision ID: 20261207_2300
Revises: 20261127_1200
Create Date: 2026-12-07 23:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261207_2300"
down_revision = "20261127_1200"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    add = lambda column: op.add_column("workloads", column, schema=SCHEMA)  # noqa: E731
    add(sa.Column("traffic", sa.String(16), nullable=False, server_default="serve"))
    add(sa.Column("traffic_change_id", sa.Uuid(), nullable=True))
    add(sa.Column("traffic_changed_at", sa.DateTime(timezone=True), nullable=True))
    add(sa.Column("traffic_revision", sa.Integer(), nullable=True))
    add(sa.Column("traffic_reported", sa.Boolean(), nullable=False, server_default="true"))
    add(sa.Column("forward_to", sa.String(255), nullable=True))
    add(sa.Column("forward_hosts", postgresql.JSONB(), nullable=False, server_default="[]"))
    add(sa.Column("forward_until", sa.DateTime(timezone=True), nullable=True))
    # The traffic watch scans for reports due and forwards expired: few rows, found by index.
    op.create_index("ix_workloads_traffic_due", "workloads", ["environment_id"], schema=SCHEMA,
                    postgresql_where=sa.text("NOT traffic_reported OR traffic = 'forward'"))


def downgrade() -> None:
    op.drop_index("ix_workloads_traffic_due", "workloads", schema=SCHEMA)
    for column in ("forward_until", "forward_hosts", "forward_to", "traffic_reported", "traffic_revision",
                   "traffic_changed_at", "traffic_change_id", "traffic"):
        op.drop_column("workloads", column, schema=SCHEMA)
