"""An organisation's billing details and the operator's settings for it (currency, tax
rate, quotas): one row, or the operator's defaults when there is none."""
from decimal import Decimal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from ..db.billing import OrganisationBilling

EDITABLE = ("company_name", "address", "email", "vat_id")  # the organisation's own; the rest is the operator's


async def of(session: AsyncSession, organisation_id: UUID, default_currency: str) -> OrganisationBilling:
    """The organisation's row, or an unsaved one with the defaults."""
    row = await session.get(OrganisationBilling, organisation_id)
    if row is None:
        row = OrganisationBilling(organisation_id=organisation_id, company_name="", address="", email="", vat_id="",
                                  currency=None, tax_rate=Decimal(0))
    return row


def currency_of(row: OrganisationBilling, default_currency: str) -> str:
    return row.currency or default_currency


async def update(session: AsyncSession, organisation_id: UUID, changes: dict, default_currency: str) -> dict:
    """The organisation's own fields only; returns what changed."""
    row = await of(session, organisation_id, default_currency)
    if row not in session:
        session.add(row)
    changed = {}
    for field in EDITABLE:
        if field in changes and getattr(row, field) != changes[field]:
            setattr(row, field, changes[field])
            changed[field] = changes[field]
    await session.flush()
    return changed
