"""Signing in to the web Control Panel: server-side browser sessions, each with its CSRF
token. (Users' password hashes already have their column, users.password_hash.)

Revision ID: 20261127_1500
Revises: 20261128_1000
Create Date: 2026-11-27 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261127_1500"
down_revision = "20261128_1000"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["controlpanel.users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_web_sessions_user_id"), "web_sessions", ["user_id"], unique=False,
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(op.f("ix_controlpanel_web_sessions_user_id"), table_name="web_sessions", schema=SCHEMA)
    op.drop_table("web_sessions", schema=SCHEMA)
