"""Use cases for environments: the default test and live, and custom ones copied from another."""
import secrets
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentRetired
from regio_common.outbox import Outbox

from ..db.models import Application, Environment, EnvironmentVariable, Region
from ..domain.environments import DEFAULT_ENVIRONMENTS
from ..domain.errors import ApiError, Conflict
from . import backups, hosts, lookups, migrations, plan_limits, quotas, service_instances, usage
from .access import Action, Caller
from .applications import check_branch, check_slug
from .crypto import Vault

COPIED_SETTINGS = ("branch", "instances", "memory_mb", "port", "health_check_path", "sanity_timeout_seconds",
                   "https_redirect")


async def create_environment(session: AsyncSession, vault: Vault, app: Application, source: Environment, *,
                             slug: str, branch: str | None) -> Environment:
    """A custom environment takes the source's settings and variables (sensitive ones stay
    encrypted as they are); it gets its own SECRET_KEY, and no domains or services. Its size
    is the source's where the plan allows it in this environment (services/plan_limits.py),
    within the organisation's quota of instances."""
    check_slug(slug)
    await migrations.refuse_while_running(session, app.id, "add environments")
    if (await session.execute(select(Environment.id).where(
            Environment.application_id == app.id, Environment.slug == slug))).first():
        raise Conflict("This application already has an environment with this slug.", "slug")
    env = Environment(application_id=app.id, slug=slug,
                      secret_key_encrypted=vault.encrypt(secrets.token_urlsafe(48)),
                      **{name: getattr(source, name) for name in COPIED_SETTINGS})
    size = plan_limits.new_environment_size(await plan_limits.plan_of(session, app), slug, like=source)
    env.instances, env.memory_mb = size.instances, size.memory_mb
    await quotas.check_instances(session, app.organisation_id, added=env.instances, field="copy_from")
    if branch is not None:
        check_branch(branch)
        env.branch = branch
    session.add(env)
    try:
        await session.flush()
    except IntegrityError as e:
        raise Conflict("This application already has an environment with this slug.", "slug") from e
    await hosts.claim_default(session, [(app, env)])
    variables = (await session.execute(select(EnvironmentVariable).where(
        EnvironmentVariable.environment_id == source.id))).scalars()
    for v in variables:
        session.add(EnvironmentVariable(environment_id=env.id, name=v.name, value=v.value,
                                        value_encrypted=v.value_encrypted, is_sensitive=v.is_sensitive))
    await session.flush()
    return env


def update_environment(env: Environment, changes: dict) -> dict:
    """Settings that take effect at the next deployment (but https_redirect, which the caller
    announces to the controller at once); returns what changed."""
    if changes.get("branch") is not None:
        check_branch(changes["branch"])
    changed = {}
    for field, value in changes.items():
        if getattr(env, field) != value:
            setattr(env, field, value)
            changed[field] = value
    return changed


async def delete_environment(session: AsyncSession, outbox: Outbox, env: Environment, app: Application) -> None:
    if env.slug in DEFAULT_ENVIRONMENTS:
        raise ApiError(f"The {env.slug} environment belongs to every application; delete the application instead.")
    await migrations.refuse_while_running(session, app.id, "delete environments")
    region = await session.get(Region, app.region_id)
    await outbox.add(session, EnvironmentRetired(environment_id=env.id), region=region.slug)
    await service_instances.delete_data_of(session, outbox, [env.id], region.slug)
    await backups.delete_files_of(session, outbox, [env.id], region.slug)
    usage.remember_deleted(session, app, [env])
    await session.delete(env)
    await session.flush()


async def copy_source(session: AsyncSession, caller: Caller, app: Application, copy_from: UUID | None) -> Environment:
    """What a new environment of ``app`` copies: ``copy_from``, one of the same application, else test."""
    if copy_from is None:
        return (await session.execute(select(Environment).where(
            Environment.application_id == app.id, Environment.slug == "test"))).scalar_one()
    source, source_app = await lookups.environment(session, caller, copy_from, Action.VIEW, field="copy_from")
    if source_app.id != app.id:
        raise ApiError("Copy from an environment of the same application.", "copy_from")
    return source


def record_created(audit, env: Environment, app: Application, source: Environment) -> None:
    """The audit record of a new custom environment, alike from the API and the web."""
    audit.record(app.organisation_id, "environment.create", "environment", env.id,
                 f"Environment {env.slug} of {app.slug} created from {source.slug}",
                 {"slug": env.slug, "branch": env.branch, "copy_from": source.id})


def record_deleted(audit, env: Environment, app: Application) -> None:
    audit.record(app.organisation_id, "environment.delete", "environment", env.id,
                 f"Environment {env.slug} of {app.slug} deleted", {"slug": env.slug})
