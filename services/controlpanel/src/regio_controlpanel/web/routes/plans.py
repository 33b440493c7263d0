"""An application's plan on its page: what it is, and for those who pay, a change of it."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.app import SessionDep

from ...db.billing import Plan
from ...db.models import Application, PlanGroup
from ...domain.errors import ApiError
from ...services import billing_details, lookups, subscriptions
from ...services.access import Action, Caller
from ...services.applications import usable_plan_groups
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)


def pays_for(caller: Caller, app: Application) -> bool:
    grant = caller.grants.get(app.organisation_id)
    return grant is not None and grant.allows(Action.BILLING) and not grant.scoped


async def plan_choices(session: AsyncSession, caller: Caller, app: Application,
                       default_currency: str) -> list[tuple[Plan, PlanGroup, str]]:
    """Every plan the application's organisation may use, with its price here, for a payer."""
    if not pays_for(caller, app):
        return []
    row = await billing_details.of(session, app.organisation_id, default_currency)
    currency = billing_details.currency_of(row, default_currency)
    choices = []
    for plan, group in (await session.execute(
            select(Plan, PlanGroup).join(PlanGroup, PlanGroup.id == Plan.plan_group_id)
            .where(usable_plan_groups({app.organisation_id})).order_by(PlanGroup.name, Plan.position))).all():
        price = await subscriptions.monthly_price(session, plan.id, app.region_id, currency)
        choices.append((plan, group, f"{price} {currency}/month"))
    return choices


@router.post("/applications/{uuid}/plan")
async def change_plan(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                      plan: Annotated[str, Form(max_length=36)] = ""):
    app = await lookups.application(session, web.caller, uuid, Action.BILLING)
    try:
        chosen = await session.get(Plan, UUID(plan))
    except ValueError:
        chosen = None
    if chosen is None or not (await session.execute(select(PlanGroup.id).where(
            PlanGroup.id == chosen.plan_group_id, usable_plan_groups({app.organisation_id})))).first():
        raise ApiError("Choose one of the plans offered.", "plan")
    before = await subscriptions.current(session, app.id)
    subscription = await subscriptions.change_plan(session, web.caller, app, chosen, request.app.state.clock.now())
    subscriptions.audit_change(audit, app, chosen, before, subscription)
    return RedirectResponse(f"/web/applications/{app.id}", status_code=303)
