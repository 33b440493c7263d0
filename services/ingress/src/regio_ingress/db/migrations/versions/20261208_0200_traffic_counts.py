"""Traffic counts: the requests and response bytes the ingress served each environment per
metering period, kept here so that a restarted ingress goes on counting where it was and sends
each period's TrafficMetered once, for billing (issue 17).

Revision ID: 20261208_0200
Revises: 20261207_2300
Create Date: 2026-12-08 02:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261208_0200"
down_revision = "20261207_2300"
branch_labels = None
depends_on = None

SCHEMA = "ingress"


def upgrade() -> None:
    op.create_table(
        "traffic_counts",
        sa.Column("environment_id", sa.Uuid(), primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("bytes_served", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_traffic_counts_unsent", "traffic_counts", ["period_start"], schema=SCHEMA,
                    postgresql_where=sa.text("sent_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_traffic_counts_unsent", "traffic_counts", schema=SCHEMA)
    op.drop_table("traffic_counts", schema=SCHEMA)
