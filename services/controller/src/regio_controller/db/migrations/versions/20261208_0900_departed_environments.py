"""Environments that left the region (a migration away, or one here rolled back), with their
last route revision: if one comes back, its routes go on from there.

Revision ID: 20261208_0900
Revises: 20261207_2300
Create Date: 2026-12-08 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261208_0900"
down_revision = "20261207_2300"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.create_table(
        "departed_environments",
        sa.Column("environment_id", sa.Uuid(), primary_key=True),
        sa.Column("route_revision", sa.Integer(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("departed_environments", schema=SCHEMA)
