"""Environment events: what the controller did to or saw of an environment's instances
outside a deployment (restarts, lost runners, replacements, scaling), shown per environment.

Revision ID: 461ac4a18210
Revises: 7d2e91c4b5a0
Create Date: 2026-11-27 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '461ac4a18210'
down_revision = '7d2e91c4b5a0'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('environment_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('instance_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_index('ix_environment_events_environment', 'environment_events', ['environment_id', 'occurred_at'],
                    unique=False, schema='controlpanel')


def downgrade() -> None:
    op.drop_index('ix_environment_events_environment', table_name='environment_events', schema='controlpanel')
    op.drop_table('environment_events', schema='controlpanel')
