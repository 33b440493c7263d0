"""Reserved for the third piece of issue 14's work that needs a migration: placeholder, so
that 20261207_1300 (dedicated plan groups) chains; whoever takes 1200 fills it in.

Revision ID: 20261207_1200
Revises: 20261207_1100
Create Date: 2026-12-07 12:00:00
"""
revision = "20261207_1200"
down_revision = "20261207_1100"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
