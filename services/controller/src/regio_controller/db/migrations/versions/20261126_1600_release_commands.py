"""Release commands: a rollout now carries the application's release commands, and runs each
as a one-off job on a runner before scaling. A row per job, written before the job reaches
its runner, lets a restarted controller wait for a command it started and never run a
finished one again.

Revision ID: 20261126_1600
Revises: 20261126_1540
Create Date: 2026-11-26 16:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261126_1600"
down_revision = "20261126_1540"
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.add_column("rollouts", sa.Column("release_commands", JSONB, nullable=False, server_default="[]"),
                  schema=SCHEMA)
    op.add_column("rollouts", sa.Column("release_command_timeout_seconds", sa.Float, nullable=False,
                                        server_default="600"), schema=SCHEMA)
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("deployment_id", sa.Uuid, nullable=False),
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("release_id", sa.Uuid, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("runner", sa.String(128), nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("deployment_id", "position", name="uq_jobs_deployment_id_position"),
        sa.ForeignKeyConstraint(["release_id"], [f"{SCHEMA}.releases.id"], name="fk_jobs_release_id_releases"),
        sa.ForeignKeyConstraint(["runner"], [f"{SCHEMA}.runners.name"], name="fk_jobs_runner_runners"),
        schema=SCHEMA,
    )
    op.create_index("ix_jobs_runner_state", "jobs", ["runner", "state"], schema=SCHEMA)
    op.create_index("ix_jobs_environment_id", "jobs", ["environment_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("jobs", schema=SCHEMA)
    op.drop_column("rollouts", "release_command_timeout_seconds", schema=SCHEMA)
    op.drop_column("rollouts", "release_commands", schema=SCHEMA)
