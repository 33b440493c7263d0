"""Scaling and healing: runners can be cordoned (no new instances) and drained (their
instances move elsewhere); a workload keeps the instance count it should run, so the
controller can add, remove and replace instances without a deployment; a rollout (and its
workload) remembers the organisation of a dedicated region, whose runners alone may take it.

Revision ID: 20261126_1900
Revises: 20261126_1600
Create Date: 2026-11-26 19:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1900"
down_revision = "20261126_1600"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.add_column("runners", sa.Column("cordoned", sa.Boolean, nullable=False, server_default=sa.false()),
                  schema=SCHEMA)
    op.add_column("runners", sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()),
                  schema=SCHEMA)
    op.add_column("workloads", sa.Column("instances", sa.Integer, nullable=True), schema=SCHEMA)
    op.add_column("workloads", sa.Column("dedicated_to", sa.Uuid, nullable=True), schema=SCHEMA)
    op.add_column("rollouts", sa.Column("dedicated_to", sa.Uuid, nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("rollouts", "dedicated_to", schema=SCHEMA)
    op.drop_column("workloads", "dedicated_to", schema=SCHEMA)
    op.drop_column("workloads", "instances", schema=SCHEMA)
    op.drop_column("runners", "draining", schema=SCHEMA)
    op.drop_column("runners", "cordoned", schema=SCHEMA)
