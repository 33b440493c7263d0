"""A plan group is public (offered to every organisation) or dedicated to one organisation,
as regions are: an application may be put only on a plan group its organisation may use.
Until billing exists this is what "may use" means; existing plan groups stay public.

Revision ID: 20261207_1200
Revises: 20261207_1100
Create Date: 2026-12-07 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261207_1200"
down_revision = "20261207_1100"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.add_column("plan_groups", sa.Column("organisation_id", sa.Uuid(), nullable=True), schema=SCHEMA)
    op.create_foreign_key("plan_groups_organisation_id_fkey", "plan_groups", "organisations", ["organisation_id"],
                          ["id"], source_schema=SCHEMA, referent_schema=SCHEMA, ondelete="CASCADE")


def downgrade() -> None:
    op.drop_constraint("plan_groups_organisation_id_fkey", "plan_groups", schema=SCHEMA, type_="foreignkey")
    op.drop_column("plan_groups", "organisation_id", schema=SCHEMA)
