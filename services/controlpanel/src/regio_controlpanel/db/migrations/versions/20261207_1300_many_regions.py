"""Many regions under one control panel: where each region's JetStream is (its own server's
domain, a leaf node of the control panel's), the port its ingress serves sites on, which
regions the free plan group may use, and regions retired by their operator.

The region made first (the default) is the free plan's, and the plan group named Developer
is the free one, as `regio up` seeded them.

Revision ID: 20261207_1300
Revises: 20261207_1200
Create Date: 2026-12-07 13:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261207_1300"
down_revision = "20261207_1200"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.add_column("regions", sa.Column("jetstream_domain", sa.String(63), nullable=True), schema=SCHEMA)
    op.add_column("regions", sa.Column("site_port", sa.Integer(), nullable=True), schema=SCHEMA)
    op.add_column("regions", sa.Column("free_plan", sa.Boolean(), nullable=False, server_default=sa.false()),
                  schema=SCHEMA)
    op.add_column("regions", sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA)
    op.add_column("plan_groups", sa.Column("is_free", sa.Boolean(), nullable=False, server_default=sa.false()),
                  schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.regions SET free_plan = true WHERE is_default")
    op.execute(f"UPDATE {SCHEMA}.plan_groups SET is_free = true WHERE name = 'Developer'")


def downgrade() -> None:
    op.drop_column("plan_groups", "is_free", schema=SCHEMA)
    for column in ("retired_at", "free_plan", "site_port", "jetstream_domain"):
        op.drop_column("regions", column, schema=SCHEMA)
