"""Which plan each application is on, and since when: its subscriptions.

An application always has exactly one open subscription (a unique index holds that). A
change of plan, a move to another region (a migration's cut-over) and the application's
deletion end the open one; the first two start the next at the same instant, so the
history has no gap and no overlap, and invoices prorate from it to the second. Every time
comes from the billing clock (services/clock.py)."""
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.billing import Plan, PlanPrice, Subscription
from ..db.models import Application, Domain, Environment, PlanGroup, Region, Service, ServiceInstance
from ..domain.errors import ApiError, Conflict, NotFound
from ..domain.invoicing import region_price
from ..domain.scaling import Size, clamped, instances_word, most_instances
from . import quotas, regions
from .access import Action, Caller
from .audit import AuditTrail

PLATFORM = "platform"  # changed_by of what no person asked for (a migration, the first import)


async def free_plan_group(session: AsyncSession) -> PlanGroup | None:
    """The public free plan group (Divio's Developer), where an application asked for on
    no plan group goes."""
    return (await session.execute(select(PlanGroup).where(PlanGroup.is_free, PlanGroup.organisation_id.is_(None))
                                  .order_by(PlanGroup.name).limit(1))).scalar_one_or_none()


async def plans_of(session: AsyncSession, plan_group_id: UUID) -> list[Plan]:
    return list((await session.execute(select(Plan).where(Plan.plan_group_id == plan_group_id)
                                       .order_by(Plan.position, Plan.name))).scalars())


async def plan_for_new_application(session: AsyncSession, plan_group_id: UUID, plan_id: UUID | None) -> Plan:
    """The plan asked for (it must be one of the group's), else the group's first."""
    plans = await plans_of(session, plan_group_id)
    if plan_id is not None:
        plan = next((p for p in plans if p.id == plan_id), None)
        if plan is None:
            raise ApiError("Plan not found in this plan group.", "plan")
        return plan
    if not plans:
        raise ApiError("This plan group has no plan yet: the operator must add one.", "plan_group")
    return plans[0]


async def current(session: AsyncSession, application_id: UUID) -> Subscription | None:
    return (await session.execute(select(Subscription).where(
        Subscription.application_id == application_id, Subscription.ended_at.is_(None)))).scalar_one_or_none()


async def current_plan(session: AsyncSession, app: Application) -> Plan:
    """The plan whose limits the application has now."""
    subscription = await current(session, app.id)
    if subscription is None:  # every application has one (the billing revision subscribed them all)
        raise RuntimeError(f"application {app.id} has no open subscription")
    return await session.get(Plan, subscription.plan_id)


async def start(session: AsyncSession, app: Application, plan: Plan, by: str, at: datetime) -> Subscription:
    """The first subscription of a new application."""
    subscription = Subscription(application_id=app.id, organisation_id=app.organisation_id,
                                application_name=app.name, plan_id=plan.id, region_id=app.region_id,
                                started_at=at, changed_by=by)
    session.add(subscription)
    await session.flush()
    return subscription


async def _switch(session: AsyncSession, app: Application, plan_id: UUID, region_id: UUID, by: str,
                  at: datetime) -> Subscription:
    """Ends the open subscription at ``at`` and starts the next there. The caller holds the
    application's row lock, so two changes never both end the same one."""
    await session.execute(update(Subscription).where(
        Subscription.application_id == app.id, Subscription.ended_at.is_(None)).values(ended_at=at))
    subscription = Subscription(application_id=app.id, organisation_id=app.organisation_id,
                                application_name=app.name, plan_id=plan_id, region_id=region_id,
                                started_at=at, changed_by=by)
    session.add(subscription)
    await session.flush()
    return subscription


async def lock(session: AsyncSession, app: Application, *, share: bool = False) -> None:
    """The application's row lock, then its row as it is now (``app`` refreshed). Taken
    exclusively by what changes its plan, region or existence (a plan change, a migration's
    cut-over, its deletion), shared by what checks its plan's limits: a check and a change of
    plan never interleave, and nothing goes on with an application deleted meanwhile."""
    locked = (await session.execute(select(Application.id).where(Application.id == app.id)
                                    .with_for_update(read=share))).first()
    if locked is None:
        raise NotFound()
    await session.refresh(app)


async def change_plan(session: AsyncSession, caller: Caller, app: Application, plan: Plan,
                      at: datetime) -> Subscription:
    """A new plan from now on (``plan`` may be of another plan group: the application moves
    to it). Refused (400 on ``plan``) when the application could not follow it; limits it
    runs above are applied at its next deployment (services/plan_limits.py)."""
    caller.require_organisation(app.organisation_id, Action.BILLING)
    await lock(session, app)
    group = await session.get(PlanGroup, plan.plan_group_id)
    if group is None or group.organisation_id not in (None, app.organisation_id):
        raise ApiError("Plan not found among those this organisation may use.", "plan")
    await regions.check_plan_allows(session, group, await session.get(Region, app.region_id), app.organisation_id,
                                    field="plan")
    await _check_followable(session, app, plan)
    now_on = await current(session, app.id)
    if now_on is not None and now_on.plan_id == plan.id:
        raise Conflict(f"The application is on the {plan.name} plan already.", "plan")
    app.plan_group_id = group.id
    return await _switch(session, app, plan.id, app.region_id, caller.user.email, at)


def audit_change(audit: AuditTrail, app: Application, plan: Plan, before: Subscription | None,
                 subscription: Subscription) -> None:
    audit.record(app.organisation_id, "subscription.change", "application", app.id,
                 f"Application {app.slug} moved to the {plan.name} plan",
                 {"plan": plan.id, "previous_plan": before.plan_id if before else None,
                  "started_at": subscription.started_at.isoformat()})


async def _check_followable(session: AsyncSession, app: Application, plan: Plan) -> None:
    """What the application has that the plan does not allow, and no deployment can undo."""
    if not plan.custom_domains and (await session.execute(
            select(Domain.id).join(Environment, Environment.id == Domain.environment_id)
            .where(Environment.application_id == app.id).limit(1))).first():
        raise ApiError(f"The {plan.name} plan allows no custom domains: remove this application's first.", "plan")
    if plan.services is not None:
        used = set((await session.execute(
            select(Service.identifier).join(ServiceInstance, ServiceInstance.service_id == Service.id)
            .join(Environment, Environment.id == ServiceInstance.environment_id)
            .where(Environment.application_id == app.id, ServiceInstance.state != "REMOVED"))).scalars())
        if used - set(plan.services):
            raise ApiError(f"The {plan.name} plan does not offer {', '.join(sorted(used - set(plan.services)))}: "
                           "remove those service instances first.", "plan")
    if plan.is_free:
        now_on = await current(session, app.id)
        if now_on is None or not (await session.get(Plan, now_on.plan_id)).is_free:
            await quotas.check_move_to_free(session, app.organisation_id)
        # A free plan bills no usage: what runs above its limits until the next deployment
        # would run for nothing. Paid plans bill it, so a downgrade to one waits for the deployment.
        for env in (await session.execute(select(Environment).where(Environment.application_id == app.id))).scalars():
            if clamped(plan, env.slug, Size(env.instances, env.memory_mb)) != Size(env.instances, env.memory_mb):
                raise ApiError(f"The {plan.name} plan allows {instances_word(most_instances(plan, env.slug))} of "
                               f"{', '.join(str(s) for s in plan.memory_sizes_mb)} MB in {env.slug}: scale it "
                               f"down first (it runs {instances_word(env.instances)} of {env.memory_mb} MB).",
                               "plan")


async def move_region(session: AsyncSession, app: Application, region_id: UUID, at: datetime) -> None:
    """A migration's cut-over: the same plan, priced in the region it moved to from then on."""
    now_on = await current(session, app.id)  # the caller (the cut-over) holds the application's lock
    if now_on is not None and now_on.region_id != region_id:
        await _switch(session, app, now_on.plan_id, region_id, PLATFORM, at)


async def end(session: AsyncSession, app: Application, at: datetime) -> None:
    """The application is deleted: it is billed until now, and its history stays."""
    await session.execute(update(Subscription).where(
        Subscription.application_id == app.id, Subscription.ended_at.is_(None)).values(ended_at=at))


async def monthly_price(session: AsyncSession, plan_id: UUID, region_id: UUID, currency: str) -> Decimal:
    """The plan's price per month in that region (its own price there, else the price for
    every region); none in that currency: free."""
    prices = (await session.execute(
        select(PlanPrice.region_id, PlanPrice.monthly).where(PlanPrice.plan_id == plan_id,
                                                              PlanPrice.currency == currency))).all()
    return region_price(prices, region_id, Decimal("0.00"))
