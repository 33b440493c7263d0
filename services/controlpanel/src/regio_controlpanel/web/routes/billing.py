"""An organisation's billing page (the running month's estimate and the invoices made) and an
invoice's printable view, for its owners, admins and billing members, as the API's
/billing/v3/invoices/ shows them (a member: 403; another organisation: 404)."""
from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy import select

from regio_common.app import SessionDep

from ...db.billing import Invoice
from ...db.models import Organisation
from ...domain.errors import NotFound
from ...services import invoices
from ...services.access import Action
from ..deps import WebCallerDep
from ..templating import render, templates

router = APIRouter(prefix="/web", include_in_schema=False)
LISTED = 120  # invoices on the page: ten years of months; the API pages through all


@router.get("/organisations/{uuid}/billing")
async def billing_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    if not web.caller.can_see(uuid):
        raise NotFound()
    web.caller.require_organisation(uuid, Action.BILLING)
    org = await session.get(Organisation, uuid)
    settings = request.app.state.settings
    estimate, terms = await invoices.estimate(session, uuid, request.app.state.clock.now(), settings.billing_currency)
    made = (await session.execute(select(Invoice).where(Invoice.organisation_id == uuid)
                                  .order_by(Invoice.period_start.desc()).limit(LISTED))).scalars().all()
    return render(request, "billing.html", web, org=org, estimate=estimate, currency=terms.currency,
                  invoices=made)


@router.get("/invoices/{uuid}")
async def invoice_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    invoice = await invoices.readable(session, web.caller, uuid)
    return templates.TemplateResponse(request, "invoice_print.html", await invoices.printable(
        session, invoice, request.app.state.settings))
