"""Membership scopes, custom domains, region services and their instances, the audit
trail; users get a password hash (web sign-in), applications their release commands.

Revision ID: ea10269f7e18
Revises: 59c5ccbf9698
Create Date: 2026-11-26 14:37:15.451250
"""
import sqlalchemy as sa
from alembic import op

revision = 'ea10269f7e18'
down_revision = '59c5ccbf9698'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=True),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('actor_email', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=False),
    sa.Column('target_id', sa.Uuid(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_index('ix_audit_events_organisation', 'audit_events', ['organisation_id', 'id'], unique=False, schema='controlpanel')
    op.create_table('services',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('region_id', sa.Uuid(), nullable=False),
    sa.Column('organisation_id', sa.Uuid(), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('identifier', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['controlpanel.organisations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['region_id'], ['controlpanel.regions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('region_id', 'identifier'),
    schema='controlpanel'
    )
    op.create_table('domains',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain'),
    schema='controlpanel'
    )
    op.create_index(op.f('ix_controlpanel_domains_environment_id'), 'domains', ['environment_id'], unique=False, schema='controlpanel')
    op.create_index('one_primary_domain', 'domains', ['environment_id'], unique=True, schema='controlpanel', postgresql_where=sa.text("kind = 'PRIMARY'"))
    op.create_table('membership_scopes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('application_id', sa.Uuid(), nullable=True),
    sa.Column('environment_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('(application_id IS NULL) <> (environment_id IS NULL)', name='one_target'),
    sa.ForeignKeyConstraint(['application_id'], ['controlpanel.applications.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['membership_id'], ['controlpanel.memberships.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='controlpanel'
    )
    op.create_index(op.f('ix_controlpanel_membership_scopes_membership_id'), 'membership_scopes', ['membership_id'], unique=False, schema='controlpanel')
    op.create_table('service_instances',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('prefix', sa.String(length=63), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('credentials_encrypted', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['controlpanel.environments.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['controlpanel.services.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('environment_id', 'type', 'prefix'),
    schema='controlpanel'
    )
    op.create_index(op.f('ix_controlpanel_service_instances_environment_id'), 'service_instances', ['environment_id'], unique=False, schema='controlpanel')
    op.add_column('users', sa.Column('password_hash', sa.String(length=255), nullable=True), schema='controlpanel')
    op.add_column('applications', sa.Column('release_commands', sa.JSON(), nullable=False, server_default='[]'),
                  schema='controlpanel')


def downgrade() -> None:
    op.drop_column('applications', 'release_commands', schema='controlpanel')
    op.drop_column('users', 'password_hash', schema='controlpanel')
    op.drop_table('service_instances', schema='controlpanel')
    op.drop_table('services', schema='controlpanel')
    op.drop_table('membership_scopes', schema='controlpanel')
    op.drop_table('domains', schema='controlpanel')
    op.drop_table('audit_events', schema='controlpanel')
