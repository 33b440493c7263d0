"""The containers table is shared by every runner agent of a host (``regio up --runners N``
starts N agents on one schema): each row now says whose it is, and each agent loads, saves
and forgets only its own. Also how an instance's last run ended, which Docker forgets once
the container is started again.

Existing rows are deleted, not given a default runner: whose they were cannot be known
(with several agents each one deleted the others' rows at every pass), a row of nobody's
would never be read or forgotten again, and all the table holds for a running instance is
its restart count. Each agent writes its instances back at its next pass; their restart
counts start again from 0.

Revision ID: 20261126_1900
Revises: 20261126_1530
Create Date: 2026-11-26 19:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261126_1900"
down_revision = "20261126_1530"
branch_labels = None
depends_on = None

SCHEMA = "runner"


def upgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.containers")
    op.drop_constraint("containers_pkey", "containers", type_="primary", schema=SCHEMA)
    op.add_column("containers", sa.Column("runner", sa.String(255), nullable=False), schema=SCHEMA)
    op.add_column("containers", sa.Column("last_exit", sa.String(255)), schema=SCHEMA)
    op.create_primary_key("containers_pkey", "containers", ["runner", "instance_id"], schema=SCHEMA)


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.containers")
    op.drop_constraint("containers_pkey", "containers", type_="primary", schema=SCHEMA)
    op.drop_column("containers", "last_exit", schema=SCHEMA)
    op.drop_column("containers", "runner", schema=SCHEMA)
    op.create_primary_key("containers_pkey", "containers", ["instance_id"], schema=SCHEMA)
