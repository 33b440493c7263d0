"""Repository credentials encrypted at rest, deploy keys, and which repository sources a
region allows: placeholder, filled in by the repository work.

Revision ID: 20261207_1100
Revises: 20261207_1000
Create Date: 2026-12-07 11:00:00
"""
revision = "20261207_1100"
down_revision = "20261207_1000"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
