"""Initial ingress schema.

The ingress keeps the desired route of every environment so that a restarted
ingress (or a restarted Caddy) gets its table back from its own database within a
second, records which configs it loaded into Caddy, and keeps the outbox and inbox
every service has.

Revision ID: 20261126_1200
Revises:
Create Date: 2026-11-26 12:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261126_1200"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "ingress"


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("environment_id", sa.Uuid(), primary_key=True),
        sa.Column("hosts", postgresql.JSONB(), nullable=False),
        sa.Column("upstreams", postgresql.JSONB(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("applied_revision", sa.Integer()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "applied_configs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["created_at"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("message_id", sa.Uuid(), primary_key=True),
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_index("ix_outbox_unpublished", "outbox", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("applied_configs", schema=SCHEMA)
    op.drop_table("routes", schema=SCHEMA)
