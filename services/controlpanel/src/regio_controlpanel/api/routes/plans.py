"""Plans, each application's subscriptions (its plan over time), and organisations'
billing details. Prices are shown to owners, admins and billing members only."""
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.billing import Plan, PlanPrice, Subscription
from ...db.models import Application, PlanGroup
from ...domain.errors import ApiError, NotFound
from ...services import billing_details, lookups, subscriptions
from ...services.access import Action, Caller
from ...services.applications import usable_plan_groups
from ..billing_schemas import (
    BillingDetailsOut,
    BillingDetailsUpdate,
    PlanOut,
    PlanPriceOut,
    SubscriptionIn,
    SubscriptionOut,
)
from ..deps import AuditDep, CallerDep, ClockDep, SessionDep
from ..pagination import Page, PageParams, paginate
from ..routing import Router

router = Router(prefix="/billing/v3", tags=["billing"])


def sees_prices(caller: Caller, organisations: set[UUID]) -> bool:
    """Billing is an action on a whole organisation: a role narrowed to some applications has none."""
    return any((g := caller.grants.get(org)) is not None and g.allows(Action.BILLING) and not g.scoped
               for org in organisations)


async def plans_out(session: AsyncSession, caller: Caller, plans: list[Plan]) -> list[PlanOut]:
    """Each plan, with its prices when the caller may bill an organisation that may use it."""
    groups = {g.id: g for g in (await session.execute(
        select(PlanGroup).where(PlanGroup.id.in_({p.plan_group_id for p in plans})))).scalars()}
    prices: dict[UUID, list[PlanPrice]] = {}
    for price in (await session.execute(select(PlanPrice).where(PlanPrice.plan_id.in_([p.id for p in plans]))
                                        .order_by(PlanPrice.currency, PlanPrice.region_id))).scalars():
        prices.setdefault(price.plan_id, []).append(price)
    out = []
    for plan in plans:
        group = groups[plan.plan_group_id]
        users = caller.organisations if group.organisation_id is None else {group.organisation_id}
        fields = dict(uuid=plan.id, plan_group=plan.plan_group_id, name=plan.name, is_free=plan.is_free,
                      memory_sizes_mb=plan.memory_sizes_mb, max_instances=plan.max_instances,
                      scalable_environments=plan.scalable_environments, services=plan.services,
                      custom_domains=plan.custom_domains, sleeps_when_idle=plan.sleeps_when_idle,
                      sleep_after_seconds=plan.sleep_after_seconds, included=plan.included)
        if sees_prices(caller, users):
            fields["prices"] = [PlanPriceOut(currency=p.currency, region=p.region_id, monthly=p.monthly)
                                for p in prices.get(plan.id, [])]
        out.append(PlanOut(**fields))
    return out


@router.get("/plans/", response_model=Page[PlanOut], response_model_exclude_unset=True)
async def list_plans(request: Request, session: SessionDep, caller: CallerDep,
                     params: Annotated[PageParams, Depends()], plan_group: UUID | None = None) -> dict:
    query = (select(Plan).join(PlanGroup, PlanGroup.id == Plan.plan_group_id)
             .where(usable_plan_groups(caller.organisations)).order_by(PlanGroup.name, Plan.position, Plan.name))
    if plan_group is not None:
        query = query.where(Plan.plan_group_id == plan_group)

    async def serialize(rows):
        return await plans_out(session, caller, list(rows))

    return await paginate(session, query, request, params, serialize)


@router.get("/plans/{uuid}/", response_model=PlanOut, response_model_exclude_unset=True)
async def get_plan(uuid: UUID, session: SessionDep, caller: CallerDep) -> PlanOut:
    plan = (await session.execute(select(Plan).join(PlanGroup, PlanGroup.id == Plan.plan_group_id).where(
        Plan.id == uuid, usable_plan_groups(caller.organisations)))).scalar_one_or_none()
    if plan is None:
        raise NotFound()
    return (await plans_out(session, caller, [plan]))[0]


async def subscription_out(session: AsyncSession, caller: Caller, subscription: Subscription, plan: Plan,
                           currency: str) -> SubscriptionOut:
    fields = dict(uuid=subscription.id, application=subscription.application_id, plan=plan.id, plan_name=plan.name,
                  plan_group=plan.plan_group_id, region=subscription.region_id,
                  started_at=subscription.started_at, ended_at=subscription.ended_at,
                  changed_by=subscription.changed_by)
    if sees_prices(caller, {subscription.organisation_id}):
        fields["currency"] = currency
        fields["monthly"] = await subscriptions.monthly_price(session, plan.id, subscription.region_id, currency)
    return SubscriptionOut(**fields)


@router.get("/subscriptions/", response_model=Page[SubscriptionOut], response_model_exclude_unset=True)
async def list_subscriptions(request: Request, session: SessionDep, caller: CallerDep,
                             params: Annotated[PageParams, Depends()],
                             application: Annotated[UUID, Query(description="The application's history.")]) -> dict:
    """An application's plans over time, the current one first. Members see them; a
    billing member sees them without seeing the application itself."""
    app = await lookups.application(session, caller, application, await _reading_subscriptions(session, caller,
                                                                                              application))
    row = await billing_details.of(session, app.organisation_id, request.app.state.settings.billing_currency)
    currency = billing_details.currency_of(row, request.app.state.settings.billing_currency)
    query = (select(Subscription).where(Subscription.application_id == app.id)
             .order_by(Subscription.started_at.desc(), Subscription.id))

    async def serialize(rows):
        plans = {p.id: p for p in (await session.execute(
            select(Plan).where(Plan.id.in_({s.plan_id for s in rows})))).scalars()}
        return [await subscription_out(session, caller, s, plans[s.plan_id], currency) for s in rows]

    return await paginate(session, query, request, params, serialize)


async def _reading_subscriptions(session: AsyncSession, caller: Caller, application_id: UUID) -> Action:
    """Whoever may view the application reads its plans; a billing member, who views no
    application, reads them through billing."""
    app = await session.get(Application, application_id)
    grant = caller.grants.get(app.organisation_id) if app is not None else None
    return Action.BILLING if grant is not None and not grant.allows(Action.VIEW) else Action.VIEW


@router.post("/subscriptions/", response_model=SubscriptionOut, status_code=201, response_model_exclude_unset=True)
async def change_plan(body: SubscriptionIn, request: Request, session: SessionDep, caller: CallerDep,
                      audit: AuditDep, clock: ClockDep) -> SubscriptionOut:
    """The application's plan from now on: its current subscription ends and this one starts."""
    app = await lookups.application(session, caller, body.application, Action.BILLING, field="application")
    plan = (await session.execute(select(Plan).join(PlanGroup, PlanGroup.id == Plan.plan_group_id).where(
        Plan.id == body.plan, usable_plan_groups({app.organisation_id})))).scalar_one_or_none()
    if plan is None:
        raise ApiError("Plan not found among those this organisation may use.", "plan")
    before = await subscriptions.current(session, app.id)
    subscription = await subscriptions.change_plan(session, caller, app, plan, clock.now())
    subscriptions.audit_change(audit, app, plan, before, subscription)
    settings = request.app.state.settings
    currency = billing_details.currency_of(await billing_details.of(session, app.organisation_id,
                                                                    settings.billing_currency),
                                           settings.billing_currency)
    return await subscription_out(session, caller, subscription, plan, currency)


def _details_out(row, currency: str) -> BillingDetailsOut:
    return BillingDetailsOut(organisation=row.organisation_id, company_name=row.company_name, address=row.address,
                             email=row.email, vat_id=row.vat_id, currency=currency, tax_rate=row.tax_rate,
                             max_applications=row.max_applications, max_free_applications=row.max_free_applications,
                             max_instances=row.max_instances, max_service_gb=row.max_service_gb)


@router.get("/organisations/{uuid}/billing-details/", response_model=BillingDetailsOut)
async def get_billing_details(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep) -> BillingDetailsOut:
    caller.require_organisation(uuid, Action.BILLING)
    default = request.app.state.settings.billing_currency
    row = await billing_details.of(session, uuid, default)
    return _details_out(row, billing_details.currency_of(row, default))


@router.patch("/organisations/{uuid}/billing-details/", response_model=BillingDetailsOut)
async def update_billing_details(uuid: UUID, body: BillingDetailsUpdate, request: Request, session: SessionDep,
                                 caller: CallerDep, audit: AuditDep) -> BillingDetailsOut:
    """The organisation's name, address, email and VAT id on its invoices. Its currency, tax
    rate and quotas are the operator's (`regio billing organisation`)."""
    caller.require_organisation(uuid, Action.BILLING)
    default = request.app.state.settings.billing_currency
    changed = await billing_details.update(session, uuid, body.sent(), default)
    audit.record(uuid, "billing_details.change", "organisation", uuid,
                 f"Billing details changed: {', '.join(changed) or 'nothing'}", changed)
    row = await billing_details.of(session, uuid, default)
    return _details_out(row, billing_details.currency_of(row, default))
