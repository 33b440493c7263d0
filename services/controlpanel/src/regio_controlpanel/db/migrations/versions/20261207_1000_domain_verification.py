"""Custom domains are routed only once their owner proves control (a DNS TXT record),
and no two environments share a host: placeholder, filled in by the domain work.

Revision ID: 20261207_1000
Revises: 20261129_1100
Create Date: 2026-12-07 10:00:00
"""
revision = "20261207_1000"
down_revision = "20261129_1100"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
