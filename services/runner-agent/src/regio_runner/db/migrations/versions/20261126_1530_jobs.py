"""Jobs: the runner agent runs one-off containers (release commands) besides instances. Each
is recorded before its container is created, so that it is never run twice, and keeps how
far its output reached the deployment log (sent through the outbox) and how it ended.

Revision ID: 20261126_1530
Revises: 20261126_1200
Create Date: 2026-11-26 15:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1530"
down_revision = "20261126_1200"
branch_labels = None
depends_on = None

SCHEMA = "runner"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Uuid(), primary_key=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("container_id", sa.String(64)),
        sa.Column("shipped_until", sa.DateTime(timezone=True)),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("jobs", schema=SCHEMA)
