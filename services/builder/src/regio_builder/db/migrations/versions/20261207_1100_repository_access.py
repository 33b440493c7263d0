"""A build keeps its repository's credentials, sealed with the build key, from the request
until the build ends: the worker that clones may run after the message is long acknowledged.
Builds that ended keep their repository's URL without the token it may have held in clear
(queued ones keep theirs until they run: the builder reads it from the URL then, and
services/builds.py `finish` drops it when they end).

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
    op.execute(f"UPDATE {SCHEMA}.builds SET repository_url = regexp_replace(repository_url, '^(https?://)[^/@]*@', '\\1') "
               "WHERE state IN ('succeeded', 'failed') AND repository_url ~ '^https?://[^/@]*@'")


def downgrade() -> None:
    op.drop_column("builds", "repository_access_sealed", schema=SCHEMA)
