"""Services know their server: where it is and how to administer it (encrypted).

Revision ID: 20261127_1300
Revises: 9f2041e9958b
Create Date: 2026-11-27 13:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261127_1300"
down_revision = "9f2041e9958b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("services", sa.Column("connection_encrypted", sa.Text(), nullable=True), schema="controlpanel")


def downgrade() -> None:
    op.drop_column("services", "connection_encrypted", schema="controlpanel")
