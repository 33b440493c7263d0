"""Scaling an environment without deploying new code: more or fewer instances of what it
serves, or another memory size for them, within its application's plan
(services/plan_limits.py) and its organisation's quota of instances (services/quotas.py).

A new count goes to the controller at once (it adds or removes instances of the serving
release). A new size is part of how a release runs, so the serving release is redeployed
at that size: a deployment like a rollback, without a build, and as zero-downtime as any."""
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentScaled
from regio_common.outbox import Outbox
from regio_common.plans import cpu_share

from ..db.models import Application, Deployment, Environment, Region
from ..domain.errors import Conflict
from . import plan_limits, quotas
from .access import Caller
from .deployments import Deployments

FIELDS = ("instances", "memory_mb")


@dataclass
class Scaled:
    changed: dict = field(default_factory=dict)
    redeploy: Deployment | None = None  # when a new size redeploys the serving release


async def scale(session: AsyncSession, outbox: Outbox, deployments: Deployments, caller: Caller,
                env: Environment, app: Application, changes: dict) -> Scaled:
    """``changes`` holds ``instances`` and/or ``memory_mb`` as sent; returns what changed."""
    scaled = Scaled()
    if not changes:
        return scaled
    plan_limits.check_size(await plan_limits.plan_of(session, app), env.slug, instances=changes.get("instances"),
                           memory_mb=changes.get("memory_mb"))
    # One change of an environment's size at a time: the check for a deployment under way
    # and the redeploy it leads to must not interleave with another request's.
    await session.refresh(env, with_for_update=True)  # as it is now: another change may have committed
    if "instances" in changes:
        await quotas.check_instances(session, app.organisation_id, added=changes["instances"] - env.instances)
    resize = changes.get("memory_mb", env.memory_mb) != env.memory_mb
    if resize and await _under_way(session, env):
        # Its rollout may already be asked for at the old size, and a redeploy of the release
        # serving now would then roll its new code back: one change at a time.
        raise Conflict("A deployment of this environment is under way: change the size when it has ended.",
                       "memory_mb")
    serving = await _serving(session, env) if resize else None
    for name in FIELDS:
        if name in changes and getattr(env, name) != changes[name]:
            setattr(env, name, changes[name])
            scaled.changed[name] = changes[name]
    if "instances" in scaled.changed:
        region = await session.get(Region, app.region_id)
        await outbox.add(session, EnvironmentScaled(environment_id=env.id, instances=env.instances),
                         region=region.slug)
    if serving is not None:
        # The redeploy's rollout carries the environment's size as it is now: the new one.
        scaled.redeploy = await deployments.request(
            session, caller, env.id, "AUTO", redeploy=serving.id,
            why=f"to resize its instances to {env.memory_mb} MB ({cpu_share(env.memory_mb):g} CPU)")
    return scaled


async def _serving(session: AsyncSession, env: Environment) -> Deployment | None:
    """The deployment whose release serves: the last to have succeeded."""
    return (await session.execute(
        select(Deployment).where(Deployment.environment_id == env.id, Deployment.success.is_(True))
        .order_by(Deployment.ended_at.desc()).limit(1))).scalar_one_or_none()


async def _under_way(session: AsyncSession, env: Environment) -> bool:
    return (await session.execute(select(Deployment.id).where(
        Deployment.environment_id == env.id, Deployment.ended_at.is_(None)).limit(1))).first() is not None
