"""Invoices of an organisation, one printable, and the running month's estimate: for the
organisation's owners, admins and billing members (a member: 403; another organisation: 404)."""
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from ...db.billing import Invoice, InvoiceLine
from ...domain.invoicing import Calculation
from ...services import invoices as service
from ...services.access import Action
from ...web.templating import templates
from ..deps import CallerDep, ClockDep, SessionDep
from ..invoice_schemas import EstimateOut, InvoiceLineOut, InvoiceOut, InvoiceSummaryOut
from ..pagination import Page, PageParams, paginate
from ..routing import Router

router = Router(prefix="/billing/v3", tags=["billing"])
ORGANISATION = Query(description="The organisation whose invoices are asked for.")


def _summary(invoice: Invoice) -> dict:
    return dict(uuid=invoice.id, number=invoice.number, organisation=invoice.organisation_id,
                period_start=invoice.period_start, period_end=invoice.period_end, currency=invoice.currency,
                subtotal=invoice.subtotal, tax_rate=invoice.tax_rate, tax=invoice.tax, total=invoice.total,
                issued_at=invoice.issued_at)


def _line_out(line: InvoiceLine) -> InvoiceLineOut:
    return InvoiceLineOut(kind=line.kind, application=line.application_id, application_name=line.application_name,
                          description=line.description, quantity=line.quantity, unit=line.unit,
                          unit_price=line.unit_price, amount=line.amount, period_start=line.period_start,
                          period_end=line.period_end)


@router.get("/invoices/", response_model=Page[InvoiceSummaryOut])
async def list_invoices(request: Request, session: SessionDep, caller: CallerDep,
                        params: Annotated[PageParams, Depends()],
                        organisation: Annotated[UUID, ORGANISATION]) -> dict:
    """Newest month first."""
    caller.require_organisation(organisation, Action.BILLING)
    query = (select(Invoice).where(Invoice.organisation_id == organisation)
             .order_by(Invoice.period_start.desc(), Invoice.number.desc()))

    async def serialize(rows):
        return [InvoiceSummaryOut(**_summary(i)) for i in rows]

    return await paginate(session, query, request, params, serialize)


@router.get("/invoices/estimate/", response_model=EstimateOut)
async def invoice_estimate(request: Request, session: SessionDep, caller: CallerDep, clock: ClockDep,
                           organisation: Annotated[UUID, ORGANISATION]) -> EstimateOut:
    """What the running month's invoice would say now: the month so far, not stored."""
    caller.require_organisation(organisation, Action.BILLING)
    result, terms = await service.estimate(session, organisation, clock.now(),
                                           request.app.state.settings.billing_currency)
    return estimate_out(organisation, result, terms.currency)


def estimate_out(organisation: UUID, result: Calculation, currency: str) -> EstimateOut:
    return EstimateOut(
        organisation=organisation, period_start=result.period_start, period_end=result.period_end, currency=currency,
        lines=[InvoiceLineOut(kind=line.kind, application=line.application_id,
                              application_name=line.application_name, description=line.description,
                              quantity=line.quantity, unit=line.unit, unit_price=line.unit_price,
                              amount=line.amount, period_start=line.period_start, period_end=line.period_end)
               for line in result.lines],
        subtotal=result.subtotal, tax_rate=result.tax_rate, tax=result.tax, total=result.total)


@router.get("/invoices/{uuid}/", response_model=InvoiceOut)
async def get_invoice(uuid: UUID, session: SessionDep, caller: CallerDep) -> InvoiceOut:
    invoice = await service.readable(session, caller, uuid)
    return InvoiceOut(**_summary(invoice), billing_details=invoice.billing_details,
                      lines=[_line_out(line) for line in await service.lines_of(session, invoice.id)])


@router.get("/invoices/{uuid}/print/", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                             "description": "The invoice as a printable page."}})
async def print_invoice(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    invoice = await service.readable(session, caller, uuid)
    return templates.TemplateResponse(request, "invoice_print.html", await service.printable(
        session, invoice, request.app.state.settings))
