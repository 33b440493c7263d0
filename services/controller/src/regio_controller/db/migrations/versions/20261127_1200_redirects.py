"""Redirects: a workload and a rollout carry the environment's redirect domains (answered
with a 301 to the primary by the ingress) and whether plain HTTP on its served hosts is
redirected to HTTPS, so every route the controller sends or lists carries them.

Revision ID: 20261127_1200
Revises: 20261126_1900
Create Date: 2026-11-27 12:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261127_1200"
down_revision = "20261126_1900"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    for table in ("workloads", "rollouts"):
        op.add_column(table, sa.Column("redirect_hosts", JSONB, nullable=False, server_default="[]"), schema=SCHEMA)
        op.add_column(table, sa.Column("https_redirect", sa.Boolean, nullable=False, server_default=sa.false()),
                      schema=SCHEMA)


def downgrade() -> None:
    for table in ("rollouts", "workloads"):
        op.drop_column(table, "https_redirect", schema=SCHEMA)
        op.drop_column(table, "redirect_hosts", schema=SCHEMA)
