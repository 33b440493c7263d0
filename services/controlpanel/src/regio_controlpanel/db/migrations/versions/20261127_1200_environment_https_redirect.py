"""Environments can redirect plain HTTP on their served domains to HTTPS (off until set).

Revision ID: 9f2041e9958b
Revises: 461ac4a18210
Create Date: 2026-11-27 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '9f2041e9958b'
down_revision = '461ac4a18210'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('environments', sa.Column('https_redirect', sa.Boolean(), nullable=False,
                                            server_default=sa.false()), schema='controlpanel')


def downgrade() -> None:
    op.drop_column('environments', 'https_redirect', schema='controlpanel')
