"""Initial runner schema: the containers the agent manages, so a restarted agent adopts
them with their restart counts, plus the outbox and inbox every service keeps.

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

SCHEMA = "runner"


def upgrade() -> None:
    op.create_table(
        "containers",
        sa.Column("instance_id", sa.Uuid(), primary_key=True),
        sa.Column("container_id", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("release_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["created_at"], schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("message_id", sa.Uuid(), primary_key=True),
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_index("ix_outbox_unpublished", table_name="outbox", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("containers", schema=SCHEMA)
