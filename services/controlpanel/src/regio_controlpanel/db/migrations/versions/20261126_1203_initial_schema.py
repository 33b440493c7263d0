"""Initial schema of the control panel: tenants, regions, plans, applications,
environments, variables, releases, deployments and their logs, outbox and inbox.

Revision ID: 59c5ccbf9698
Revises: 
Create Date: 2026-11-26 12:03:57.394068
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '59c5ccbf9698'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('consumer', sa.String(length=128), nullable=False),
    sa.Column('handled_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'consumer'),
    schema='controlpanel'
    )
    op.create_table('organisations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_table('outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_index('ix_outbox_unpublished', 'outbox', ['created_at'], unique=False, schema='controlpanel', postgresql_where='published_at IS NULL')
    op.create_table('physical_regions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('vendor', sa.String(length=100), nullable=False),
    sa.Column('location', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    schema='controlpanel'
    )
    op.create_table('plan_groups',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('max_instances', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    schema='controlpanel'
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('first_name', sa.String(length=150), nullable=False),
    sa.Column('last_name', sa.String(length=150), nullable=False),
    sa.Column('is_staff', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email'),
    schema='controlpanel'
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['controlpanel.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash'),
    schema='controlpanel'
    )
    op.create_table('memberships',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['controlpanel.organisations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['controlpanel.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organisation_id', 'user_id'),
    schema='controlpanel'
    )
    op.create_table('regions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('physical_region_id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['controlpanel.organisations.id'], ),
    sa.ForeignKeyConstraint(['physical_region_id'], ['controlpanel.physical_regions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug'),
    schema='controlpanel'
    )
    op.create_table('repositories',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['controlpanel.organisations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_table('applications',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('region_id', sa.Uuid(), nullable=False),
    sa.Column('repository_id', sa.Uuid(), nullable=True),
    sa.Column('plan_group_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['controlpanel.organisations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plan_group_id'], ['controlpanel.plan_groups.id'], ),
    sa.ForeignKeyConstraint(['region_id'], ['controlpanel.regions.id'], ),
    sa.ForeignKeyConstraint(['repository_id'], ['controlpanel.repositories.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug'),
    schema='controlpanel'
    )
    op.create_table('environments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('application_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('branch', sa.String(length=255), nullable=False),
    sa.Column('instances', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('health_check_path', sa.String(length=255), nullable=False),
    sa.Column('secret_key_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['controlpanel.applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('application_id', 'slug'),
    schema='controlpanel'
    )
    op.create_table('environment_variables',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('value_encrypted', sa.Text(), nullable=True),
    sa.Column('is_sensitive', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('environment_id', 'name'),
    schema='controlpanel'
    )
    op.create_table('releases',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('image', sa.String(length=255), nullable=False),
    sa.Column('commit', sa.String(length=64), nullable=True),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('env_encrypted', sa.Text(), nullable=False),
    sa.Column('env_names', sa.JSON(), nullable=False),
    sa.Column('sensitive_names', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_table('deployments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('build_mode', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('commit', sa.String(length=64), nullable=True),
    sa.Column('release_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['controlpanel.releases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_table('deployment_log_chunks',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.Uuid(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['controlpanel.deployments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_index(op.f('ix_controlpanel_deployment_log_chunks_deployment_id'), 'deployment_log_chunks', ['deployment_id'], unique=False, schema='controlpanel')


def downgrade() -> None:
    op.drop_index(op.f('ix_controlpanel_deployment_log_chunks_deployment_id'), table_name='deployment_log_chunks', schema='controlpanel')
    op.drop_table('deployment_log_chunks', schema='controlpanel')
    op.drop_table('deployments', schema='controlpanel')
    op.drop_table('releases', schema='controlpanel')
    op.drop_table('environment_variables', schema='controlpanel')
    op.drop_table('environments', schema='controlpanel')
    op.drop_table('applications', schema='controlpanel')
    op.drop_table('repositories', schema='controlpanel')
    op.drop_table('regions', schema='controlpanel')
    op.drop_table('memberships', schema='controlpanel')
    op.drop_table('api_tokens', schema='controlpanel')
    op.drop_table('users', schema='controlpanel')
    op.drop_table('plan_groups', schema='controlpanel')
    op.drop_table('physical_regions', schema='controlpanel')
    op.drop_index('ix_outbox_unpublished', table_name='outbox', schema='controlpanel', postgresql_where='published_at IS NULL')
    op.drop_table('outbox', schema='controlpanel')
    op.drop_table('organisations', schema='controlpanel')
    op.drop_table('inbox', schema='controlpanel')
