"""Initial controller schema: runners, releases, workloads, instances, rollouts, and the
outbox and inbox through which the controller's messages leave and arrive exactly once
in effect.

Revision ID: 20261126_1200
Revises:
Create Date: 2026-11-26 12:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261126_1200"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "controller"


def upgrade() -> None:
    op.create_table(
        "runners",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("cpus", sa.Float, nullable=False),
        sa.Column("labels", JSONB, nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("desired_revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("name", name="pk_runners"),
        schema=SCHEMA,
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("sealed_env", sa.Text, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("cpus", sa.Float, nullable=False, server_default="0.25"),
        sa.Column("health_check_path", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        schema=SCHEMA,
    )
    op.create_index("ix_releases_environment_id", "releases", ["environment_id"], schema=SCHEMA)
    op.create_table(
        "workloads",
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("application_id", sa.Uuid, nullable=False),
        sa.Column("current_release_id", sa.Uuid, nullable=True),
        sa.Column("current_deployment_id", sa.Uuid, nullable=True),
        sa.Column("hosts", JSONB, nullable=False),
        sa.Column("route_revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("applied_route_revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("environment_id", name="pk_workloads"),
        sa.ForeignKeyConstraint(["current_release_id"], [f"{SCHEMA}.releases.id"],
                                name="fk_workloads_current_release_id_releases"),
        schema=SCHEMA,
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("release_id", sa.Uuid, nullable=False),
        sa.Column("deployment_id", sa.Uuid, nullable=False),
        sa.Column("runner", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.ForeignKeyConstraint(["release_id"], [f"{SCHEMA}.releases.id"], name="fk_instances_release_id_releases"),
        sa.ForeignKeyConstraint(["runner"], [f"{SCHEMA}.runners.name"], name="fk_instances_runner_runners"),
        schema=SCHEMA,
    )
    op.create_index("ix_instances_runner_state", "instances", ["runner", "state"], schema=SCHEMA)
    op.create_index("ix_instances_environment_id_state", "instances", ["environment_id", "state"], schema=SCHEMA)
    op.create_index("ix_instances_deployment_id", "instances", ["deployment_id"], schema=SCHEMA)
    op.create_table(
        "rollouts",
        sa.Column("deployment_id", sa.Uuid, nullable=False),
        sa.Column("environment_id", sa.Uuid, nullable=False),
        sa.Column("application_id", sa.Uuid, nullable=False),
        sa.Column("release_id", sa.Uuid, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("hosts", JSONB, nullable=False),
        sa.Column("sanity_timeout_seconds", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=True),
        sa.Column("route_revision", sa.Integer, nullable=True),
        sa.Column("previous_release_id", sa.Uuid, nullable=True),
        sa.Column("previous_deployment_id", sa.Uuid, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_rollouts"),
        sa.ForeignKeyConstraint(["release_id"], [f"{SCHEMA}.releases.id"], name="fk_rollouts_release_id_releases"),
        schema=SCHEMA,
    )
    op.create_index("ix_rollouts_environment_id_created_at", "rollouts", ["environment_id", "created_at"],
                    schema=SCHEMA)
    op.create_index("ix_rollouts_unfinished", "rollouts", ["created_at"], schema=SCHEMA,
                    postgresql_where=sa.text("state IN ('pending', 'running')"))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        schema=SCHEMA,
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["created_at"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("message_id", sa.Uuid, nullable=False),
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("message_id", "consumer", name="pk_inbox"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("inbox", "outbox", "rollouts", "instances", "workloads", "releases", "runners"):
        op.drop_table(table, schema=SCHEMA)
