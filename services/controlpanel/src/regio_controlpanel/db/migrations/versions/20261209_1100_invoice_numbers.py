"""Invoice numbers (R-YYYYMM-NNNNNN) from a sequence: unique across the platform and
increasing, whichever process closes a month (the periodic loop or `regio billing close-month`).

Revision ID: 20261209_1100
Revises: 20261209_0900
Create Date: 2026-12-09 11:00:00
"""
from alembic import op

revision = "20261209_1100"
down_revision = "20261209_0900"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE controlpanel.invoice_numbers")


def downgrade() -> None:
    op.execute("DROP SEQUENCE controlpanel.invoice_numbers")
