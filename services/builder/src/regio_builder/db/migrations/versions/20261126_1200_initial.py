"""Initial builder schema.

The builder records every requested build before running it, so a builder that is
killed mid-build finds its queue again in its own database; a build row keeps the
build's log and image so AUTO deployments can reuse an image built from the same
commit. Plus the outbox and inbox every service has.

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

SCHEMA = "builder"


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("application_id", sa.Uuid(), nullable=False),
        sa.Column("repository_url", sa.Text(), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("build_mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("commit", sa.String(64)),
        sa.Column("image", sa.String(255)),
        sa.Column("image_tag", sa.String(255)),
        sa.Column("exposed_port", sa.Integer()),
        sa.Column("reused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text()),
        sa.Column("log", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_builds_queued", "builds", ["created_at"], schema=SCHEMA,
                    postgresql_where=sa.text("state = 'queued'"))
    op.create_index("ix_builds_reusable", "builds", ["application_id", "commit"], schema=SCHEMA,
                    postgresql_where=sa.text("state = 'succeeded'"))
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
    op.drop_index("ix_builds_reusable", "builds", schema=SCHEMA)
    op.drop_index("ix_builds_queued", "builds", schema=SCHEMA)
    op.drop_table("builds", schema=SCHEMA)
