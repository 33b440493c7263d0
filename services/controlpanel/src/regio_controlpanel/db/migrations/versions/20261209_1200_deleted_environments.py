"""Deleted environments, remembered for the usage their meters report after the deletion
(db/billing.py: DeletedEnvironment).

Revision ID: 20261209_1200
Revises: 20261209_1100
Create Date: 2026-12-09 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261209_1200"
down_revision = "20261209_1100"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.create_table(
        "deleted_environments",
        sa.Column("environment_id", sa.Uuid(), primary_key=True),
        sa.Column("application_id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("deleted_environments", schema=SCHEMA)
