"""The one place that holds an application to its plan's limits: instances per environment
(more than one only where the plan lets the environment scale), memory sizes, services and
custom domains. A refusal is a 400 naming the field and the plan.

A plan changed to one the application runs above is accepted (services/subscriptions.py);
the environment is scaled down to it at its next deployment (``clamp``)."""
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.plans import MEMORY_SIZES_MB

from ..db.billing import Plan
from ..db.models import Application, Environment, Service
from ..domain.errors import ApiError
from ..domain.scaling import Size, clamped, default_memory_mb, instances_word, most_instances
from . import subscriptions


async def plan_of(session: AsyncSession, app: Application) -> Plan:
    """The application's plan, held until the request commits: a change of plan waits for
    the check (and the change it allows) to commit, and the check sees no plan changed under it."""
    await subscriptions.lock(session, app, share=True)
    return await subscriptions.current_plan(session, app)


def check_size(plan: Plan, environment_slug: str, *, instances: int | None = None,
               memory_mb: int | None = None) -> None:
    """Raises a 400 naming ``instances`` or ``memory_mb`` and the limit it passes."""
    if instances is not None:
        most = most_instances(plan, environment_slug)
        if instances > most:
            if most < plan.max_instances:
                scalable = ", ".join(plan.scalable_environments or []) or "no environment"
                raise ApiError(f"at most 1 instance in the {environment_slug} environment on the {plan.name} plan "
                               f"(more only in: {scalable})", "instances")
            raise ApiError(f"at most {instances_word(most)} on the {plan.name} plan", "instances")
    if memory_mb is not None:
        if memory_mb not in MEMORY_SIZES_MB:
            raise ApiError(f"Choose one of {', '.join(str(s) for s in MEMORY_SIZES_MB)} (MB).", "memory_mb")
        if memory_mb not in plan.memory_sizes_mb:
            sizes = ", ".join(str(s) for s in sorted(plan.memory_sizes_mb))
            raise ApiError(f"{memory_mb} MB is not a size of the {plan.name} plan (sizes: {sizes} MB)", "memory_mb")


def check_service(plan: Plan, service: Service) -> None:
    if plan.services is not None and service.identifier not in plan.services:
        offered = ", ".join(sorted(plan.services)) or "none"
        raise ApiError(f"The {plan.name} plan does not offer {service.identifier} (services: {offered}).", "service")


def check_custom_domains(plan: Plan) -> None:
    if not plan.custom_domains:
        raise ApiError(f"The {plan.name} plan allows no custom domains.", "domain")


def new_environment_size(plan: Plan, environment_slug: str, like: Environment | None = None) -> Size:
    """A default environment starts at one instance of the plan's default size; a custom one
    at its source's size where the plan allows it there."""
    if like is None:
        return Size(instances=1, memory_mb=default_memory_mb(plan))
    return clamped(plan, environment_slug, Size(like.instances, like.memory_mb))


def clamp(plan: Plan, env: Environment) -> str | None:
    """Scales the environment's row down to the plan (a plan changed to one it ran above);
    returns the deployment log's line saying so, or None when it fits."""
    was = Size(env.instances, env.memory_mb)
    now = clamped(plan, env.slug, was)
    if now == was:
        return None
    env.instances, env.memory_mb = now.instances, now.memory_mb
    return (f"The {plan.name} plan allows {instances_word(most_instances(plan, env.slug))} of at most "
            f"{max(plan.memory_sizes_mb)} MB: this deployment runs {instances_word(now.instances)} of "
            f"{now.memory_mb} MB (was {was.instances} of {was.memory_mb} MB).")

