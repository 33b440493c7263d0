"""A build keeps its repository's credentials, sealed with the build key, from the request
until the build ends: the worker that clones may run after the message is long acknowledged.

Revision ID: 20261207_1100
Revises: 20261126_1530
Create Date: 2026-12-07 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261207_1100"
down_revision = "20261126_1530"
branch_labels = None
depends_on = None

SCHEMA = "builder"


def upgrade() -> None:
    op.add_column("builds", sa.Column("repository_access_sealed", sa.Text(), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("builds", "repository_access_sealed", schema=SCHEMA)
