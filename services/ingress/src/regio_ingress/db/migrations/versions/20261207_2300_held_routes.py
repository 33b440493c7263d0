"""Routes can be held: an environment's requests wait at the ingress during a migration's cut-over.

Revision ID: 20261207_2300
Revises: 20261126_2100
Create Date: 2026-12-07 23:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261207_2300"
down_revision = "20261126_2100"
branch_labels = None
depends_on = None

SCHEMA = "ingress"


def upgrade() -> None:
    op.add_column("routes", sa.Column("held", sa.Boolean(), nullable=False, server_default="false"), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("routes", "held", schema=SCHEMA)
