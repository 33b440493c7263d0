"""When the source's ingress began holding a migrating environment's requests and began
forwarding them: the write pause, as the source's controller saw the routes applied.

Revision ID: 20261208_1000
Revises: 20261208_0900
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261208_1000"
down_revision = "20261208_0900"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    for column in ("held_from", "forwarded_from"):
        op.add_column("migration_environments", sa.Column(column, sa.DateTime(timezone=True), nullable=True),
                      schema=SCHEMA)


def downgrade() -> None:
    for column in ("forwarded_from", "held_from"):
        op.drop_column("migration_environments", column, schema=SCHEMA)
