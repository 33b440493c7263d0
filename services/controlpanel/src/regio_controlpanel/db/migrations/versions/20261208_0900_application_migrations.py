"""Applications migrated between regions: the migration, its log, each environment's part
(its deployment in the target region and its cut-over) and each service instance's copy;
where a region's ingress is reached from other regions; a deployment's own region (a
migration's, in the target region).

Revision ID: 20261208_0900
Revises: 20261207_1300
Create Date: 2026-12-08 09:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261208_0900"
down_revision = "20261207_1300"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def _fk(column: str, table: str, **kwargs) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{SCHEMA}.{table}.id"], **kwargs)


def upgrade() -> None:
    op.add_column("regions", sa.Column("ingress_address", sa.String(261), nullable=True), schema=SCHEMA)
    op.add_column("deployments", sa.Column("region_id", postgresql.UUID(as_uuid=True), nullable=True), schema=SCHEMA)
    op.create_foreign_key("deployments_region_id_fkey", "deployments", "regions", ["region_id"], ["id"],
                          source_schema=SCHEMA, referent_schema=SCHEMA)
    when = sa.DateTime(timezone=True)
    op.create_table(
        "application_migrations",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("application_id", postgresql.UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("source_region_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("target_region_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("requested_by", sa.String(254), nullable=False),
        sa.Column("cancel_requested", sa.Text()),
        sa.Column("write_pause_ms", sa.Integer()),
        sa.Column("held_at", when),
        sa.Column("cut_over_at", when),
        sa.Column("grace_until", when),
        sa.Column("source_removed_at", when),
        sa.Column("lease_until", when),
        sa.Column("created_at", when, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", when),
        sa.Column("ended_at", when),
        _fk("application_id", "applications", ondelete="CASCADE"),
        _fk("source_region_id", "regions"),
        _fk("target_region_id", "regions"),
        schema=SCHEMA,
    )
    op.create_table(
        "migration_log_chunks",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("migration_id", postgresql.UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", when, server_default=sa.func.now(), nullable=False),
        _fk("migration_id", "application_migrations", ondelete="CASCADE"),
        schema=SCHEMA,
    )
    op.create_table(
        "migration_environments",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("migration_id", postgresql.UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("environment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("release_id", postgresql.UUID(as_uuid=True)),
        sa.Column("deployment_id", postgresql.UUID(as_uuid=True)),
        sa.Column("old_hosts", sa.JSON(), nullable=False),
        sa.Column("traffic_change_id", postgresql.UUID(as_uuid=True)),
        sa.Column("traffic_mode", sa.String(16)),
        sa.Column("traffic_confirmed", sa.Boolean(), nullable=False),
        sa.Column("traffic_error", sa.Text()),
        sa.Column("write_pause_ms", sa.Integer()),
        _fk("migration_id", "application_migrations", ondelete="CASCADE"),
        _fk("environment_id", "environments", ondelete="CASCADE"),
        _fk("release_id", "releases", ondelete="SET NULL"),
        _fk("deployment_id", "deployments", ondelete="SET NULL"),
        sa.UniqueConstraint("migration_id", "environment_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "migration_service_copies",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("migration_id", postgresql.UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("service_instance_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("source_service_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("target_service_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("target_credentials_encrypted", sa.Text()),
        sa.Column("source_credentials_encrypted", sa.Text()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_deleted_at", when),
        _fk("migration_id", "application_migrations", ondelete="CASCADE"),
        _fk("service_instance_id", "service_instances", ondelete="CASCADE"),
        _fk("source_service_id", "services"),
        _fk("target_service_id", "services"),
        sa.UniqueConstraint("migration_id", "service_instance_id"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("migration_service_copies", "migration_environments", "migration_log_chunks",
                  "application_migrations"):
        op.drop_table(table, schema=SCHEMA)
    op.drop_constraint("deployments_region_id_fkey", "deployments", schema=SCHEMA)
    op.drop_column("deployments", "region_id", schema=SCHEMA)
    op.drop_column("regions", "ingress_address", schema=SCHEMA)
