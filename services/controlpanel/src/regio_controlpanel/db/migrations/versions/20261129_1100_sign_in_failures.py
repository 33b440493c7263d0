"""Failed web sign-ins, by email, so that guessing a password is throttled.

Revision ID: 20261129_1100
Revises: 20261129_1000
Create Date: 2026-11-29 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "20261129_1100"
down_revision = "20261129_1000"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("ix_sign_in_failures_email", "sign_in_failures", ["email", "created_at"], unique=False,
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_email", table_name="sign_in_failures", schema=SCHEMA)
    op.drop_table("sign_in_failures", schema=SCHEMA)
