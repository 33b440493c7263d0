"""A build may be asked for one commit of its branch rather than the branch's head (a
migration builds in its target region the commit that serves in the source): the commit
asked for is kept with the build, since the worker that clones runs after the request is
acknowledged.

Revision ID: 20261207_2300
Revises: 20261207_1100
Create Date: 2026-12-07 23:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261207_2300"
down_revision = "20261207_1100"
branch_labels = None
depends_on = None

SCHEMA = "builder"


def upgrade() -> None:
    op.add_column("builds", sa.Column("requested_commit", sa.String(64), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("builds", "requested_commit", schema=SCHEMA)
