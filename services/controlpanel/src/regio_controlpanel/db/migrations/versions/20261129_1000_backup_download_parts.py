"""Each part of a backup download link gets an id of its own (Divio's backup download service
instances, which `divio app pull` polls); links made before get theirs here.

Revision ID: 20261129_1000
Revises: 20261127_1500
Create Date: 2026-11-29 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261129_1000"
down_revision = "20261127_1500"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.create_table(
        "backup_download_parts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("download_id", sa.Uuid(), nullable=False),
        sa.Column("service_instance_backup_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["download_id"], ["controlpanel.backup_downloads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_instance_backup_id"], ["controlpanel.service_instance_backups.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_backup_download_parts_download_id"), "backup_download_parts",
                    ["download_id"], unique=False, schema=SCHEMA)
    op.execute("""
        INSERT INTO controlpanel.backup_download_parts (id, download_id, service_instance_backup_id)
        SELECT gen_random_uuid(), d.id, p.id
        FROM controlpanel.backup_downloads d
        CROSS JOIN LATERAL json_array_elements_text(d.service_instance_backup_ids) AS part(id)
        JOIN controlpanel.service_instance_backups p ON p.id = part.id::uuid
    """)


def downgrade() -> None:
    op.drop_index(op.f("ix_controlpanel_backup_download_parts_download_id"), table_name="backup_download_parts",
                  schema=SCHEMA)
    op.drop_table("backup_download_parts", schema=SCHEMA)
