"""Deployments record when each step started and which deployment they redeploy;
environments get their sanity-test limit.

Revision ID: 7d2e91c4b5a0
Revises: ea10269f7e18
Create Date: 2026-11-26 15:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '7d2e91c4b5a0'
down_revision = 'ea10269f7e18'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deployments', sa.Column('steps', sa.JSON(), nullable=False, server_default='[]'),
                  schema='controlpanel')
    op.add_column('deployments', sa.Column('source_deployment_id', sa.Uuid(), nullable=True), schema='controlpanel')
    op.create_foreign_key('deployments_source_deployment_id_fkey', 'deployments', 'deployments',
                          ['source_deployment_id'], ['id'], source_schema='controlpanel', referent_schema='controlpanel',
                          ondelete='SET NULL')
    op.add_column('environments', sa.Column('sanity_timeout_seconds', sa.Integer(), nullable=False,
                                            server_default='60'), schema='controlpanel')


def downgrade() -> None:
    op.drop_column('environments', 'sanity_timeout_seconds', schema='controlpanel')
    op.drop_constraint('deployments_source_deployment_id_fkey', 'deployments', schema='controlpanel')
    op.drop_column('deployments', 'source_deployment_id', schema='controlpanel')
    op.drop_column('deployments', 'steps', schema='controlpanel')
