"""Backups of service instances, their restores and their download links: an environment's
database and media can be saved, put back (into it or another environment) and fetched.

Revision ID: 20261128_1000
Revises: 20261127_1300
Create Date: 2026-11-28 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261128_1000"
down_revision = "20261127_1300"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("success", sa.String(length=16), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("scheduled_for_deletion_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["controlpanel.environments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("ix_backups_environment", "backups", ["environment_id", "created_at"], unique=False,
                    schema=SCHEMA)

    op.create_table(
        "service_instance_backups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("backup_id", sa.Uuid(), nullable=False),
        sa.Column("service_instance_id", sa.Uuid(), nullable=True),
        sa.Column("storage_service_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("success", sa.String(length=16), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["backup_id"], ["controlpanel.backups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_instance_id"], ["controlpanel.service_instances.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["storage_service_id"], ["controlpanel.services.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_service_instance_backups_backup_id"), "service_instance_backups",
                    ["backup_id"], unique=False, schema=SCHEMA)

    op.create_table(
        "backup_restores",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("backup_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("success", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["backup_id"], ["controlpanel.backups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["environment_id"], ["controlpanel.environments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_backup_restores_backup_id"), "backup_restores", ["backup_id"],
                    unique=False, schema=SCHEMA)

    op.create_table(
        "backup_restore_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("restore_id", sa.Uuid(), nullable=False),
        sa.Column("service_instance_backup_id", sa.Uuid(), nullable=False),
        sa.Column("service_instance_id", sa.Uuid(), nullable=True),
        sa.Column("success", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["restore_id"], ["controlpanel.backup_restores.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_instance_backup_id"], ["controlpanel.service_instance_backups.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_instance_id"], ["controlpanel.service_instances.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_backup_restore_items_restore_id"), "backup_restore_items", ["restore_id"],
                    unique=False, schema=SCHEMA)

    op.create_table(
        "backup_downloads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("backup_id", sa.Uuid(), nullable=False),
        sa.Column("service_instance_backup_ids", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["backup_id"], ["controlpanel.backups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_backup_downloads_backup_id"), "backup_downloads", ["backup_id"],
                    unique=False, schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("backup_downloads", schema=SCHEMA)
    op.drop_table("backup_restore_items", schema=SCHEMA)
    op.drop_table("backup_restores", schema=SCHEMA)
    op.drop_table("service_instance_backups", schema=SCHEMA)
    op.drop_table("backups", schema=SCHEMA)
