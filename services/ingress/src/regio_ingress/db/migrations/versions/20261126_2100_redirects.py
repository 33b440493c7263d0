"""Routes carry redirect domains and the HTTP→HTTPS redirect of their environment.

Revision ID: 20261126_2100
Revises: 20261126_1200
Create Date: 2026-11-26 21:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261126_2100"
down_revision = "20261126_1200"
branch_labels = None
depends_on = None

SCHEMA = "ingress"


def upgrade() -> None:
    op.add_column("routes", sa.Column("redirect_hosts", postgresql.JSONB(), nullable=False, server_default="[]"),
                  schema=SCHEMA)
    op.add_column("routes", sa.Column("https_redirect", sa.Boolean(), nullable=False, server_default="false"),
                  schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("routes", "https_redirect", schema=SCHEMA)
    op.drop_column("routes", "redirect_hosts", schema=SCHEMA)
