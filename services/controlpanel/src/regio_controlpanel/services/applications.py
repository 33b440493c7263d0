"""Use cases for repositories and applications."""
import re
import secrets
from datetime import datetime
from uuid import UUID

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import EnvironmentRetired
from regio_common.outbox import Outbox
from regio_common.repository_sources import SourceRefused
from regio_common.repository_sources import check_branch as check_branch_name

from ..db.models import Application, Environment, PlanGroup, Region, Repository
from ..domain.environments import DEFAULT_ENVIRONMENTS
from ..domain.errors import ApiError, Conflict, NotFound
from . import (
    backups,
    hosts,
    migrations,
    plan_limits,
    quotas,
    regions,
    repositories,
    service_instances,
    subscriptions,
    usage,
)
from .access import Action, Caller
from .crypto import Vault

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SLUG_RULE = "Use lowercase letters, digits and hyphens, starting and ending with a letter or digit (at most 63)."


def check_slug(slug: str, field: str = "slug") -> None:
    if not SLUG.match(slug):
        raise ApiError(SLUG_RULE, field)


async def repository(session: AsyncSession, caller: Caller, repository_id: UUID, action: Action,
                     field: str | None = None) -> Repository:
    repo = await session.get(Repository, repository_id)
    if repo is None or not caller.can_see(repo.organisation_id):
        raise ApiError("Repository not found.", field) if field else NotFound()
    caller.require_organisation(repo.organisation_id, action, field)
    return repo


def check_branch(branch: str, field: str = "branch") -> None:
    try:
        check_branch_name(branch)
    except SourceRefused as e:
        raise repositories.refused(e, field) from None


async def create_application(session: AsyncSession, caller: Caller, vault: Vault, *, name: str, slug: str,
                             organisation_id: UUID, region_id: UUID | None, repository_id: UUID | None,
                             branch: str, plan_group_id: UUID | None, release_commands: list[dict],
                             at: datetime, plan_id: UUID | None = None) -> Application:
    """On the plan asked for (``plan_id``, in ``plan_group_id``), else the group's first; on
    no plan group, the free one (as Divio's Developer). Subscribed from ``at``."""
    caller.require_organisation(organisation_id, Action.MANAGE, "organisation")
    check_slug(slug)
    check_branch(branch)
    if plan_group_id is None:
        free = await subscriptions.free_plan_group(session)
        if free is None:
            raise ApiError("Choose a plan group: this platform offers no free one.", "plan_group")
        plan_group_id = free.id
    group = await _check_plan_group(session, plan_group_id, organisation_id)
    plan = await subscriptions.plan_for_new_application(session, group.id, plan_id)
    await quotas.check_new_application(session, organisation_id, free=plan.is_free,
                                       instances=len(DEFAULT_ENVIRONMENTS),
                                       free_field="plan" if plan_id else "plan_group")
    region = await regions.for_new_application(session, region_id, group, organisation_id)
    await _check_repository(session, repository_id, organisation_id, region)
    if (await session.execute(select(Application.id).where(Application.slug == slug))).first():
        raise Conflict("An application with this slug already exists.", "slug")
    app = Application(name=name, slug=slug, organisation_id=organisation_id, region_id=region.id,
                      repository_id=repository_id, plan_group_id=plan_group_id, release_commands=release_commands)
    session.add(app)
    try:
        await session.flush()
    except IntegrityError as e:  # a concurrent create with the same slug
        raise Conflict("An application with this slug already exists.", "slug") from e
    envs = [Environment(application_id=app.id, slug=env_slug, branch=branch,
                        secret_key_encrypted=vault.encrypt(secrets.token_urlsafe(48)),
                        **vars(plan_limits.new_environment_size(plan, env_slug)))
            for env_slug in DEFAULT_ENVIRONMENTS]
    session.add_all(envs)
    await session.flush()
    await hosts.claim_default(session, [(app, env) for env in envs])
    await subscriptions.start(session, app, plan, caller.user.email, at)
    return app


def update_action(changes: dict) -> Action:
    """What a change needs: the plan group is what the organisation pays for, so owners,
    admins and billing members choose it (members do not); anything else is managing."""
    return Action.BILLING if changes and set(changes) <= {"plan_group"} else Action.MANAGE


async def update_application(session: AsyncSession, caller: Caller, app: Application, changes: dict,
                             at: datetime) -> dict:
    """Applies the given fields; returns what actually changed. The slug is fixed: it is part
    of every default domain and of the images' names. A new plan group (null: the free one)
    puts the application on that group's first plan from ``at``."""
    if "repository" in changes:
        await _check_repository(session, changes["repository"], app.organisation_id,
                                await session.get(Region, app.region_id))
    changed = {}
    if "plan_group" in changes:
        caller.require_organisation(app.organisation_id, Action.BILLING)
        group_id = changes.pop("plan_group")
        if group_id is None:
            free = await subscriptions.free_plan_group(session)
            group_id = free.id if free is not None else None
        group = await _check_plan_group(session, group_id, app.organisation_id)
        if group is None:
            raise ApiError("Choose a plan group: this platform offers no free one.", "plan_group")
        if group.id != app.plan_group_id:
            await regions.check_plan_allows(session, group, await session.get(Region, app.region_id),
                                            app.organisation_id)
            plan = await subscriptions.plan_for_new_application(session, group.id, None)
            await subscriptions.change_plan(session, caller, app, plan, at)
            changed["plan_group"] = group.id
            changed["plan"] = plan.id
    columns = {"name": "name", "repository": "repository_id", "release_commands": "release_commands"}
    for field, value in changes.items():
        if getattr(app, columns[field]) != value:
            setattr(app, columns[field], value)
            changed[field] = value
    await session.flush()
    return changed


async def delete_application(session: AsyncSession, outbox: Outbox, app: Application, at: datetime) -> None:
    """Its environments are retired first (the controller stops their containers and routes),
    in the same transaction that deletes the rows. Its subscription ends ``at``: the rest of
    the month is not billed, the part before is."""
    # A migration's copies and routes in the target would outlive it, unknown to anyone.
    await migrations.refuse_while_running(session, app.id, "delete it")
    await subscriptions.lock(session, app)  # a plan change under way starts no subscription after this
    await subscriptions.end(session, app, at)
    region = await session.get(Region, app.region_id)
    envs = list((await session.execute(select(Environment).where(Environment.application_id == app.id))).scalars())
    for env in envs:
        await outbox.add(session, EnvironmentRetired(environment_id=env.id), region=region.slug)
    await service_instances.delete_data_of(session, outbox, [env.id for env in envs], region.slug)
    await backups.delete_files_of(session, outbox, [env.id for env in envs], region.slug)
    usage.remember_deleted(session, app, envs)
    await session.delete(app)
    await session.flush()


async def _check_repository(session: AsyncSession, repository_id: UUID | None, organisation_id: UUID,
                            region: Region) -> None:
    if repository_id is None:
        return
    repo = await session.get(Repository, repository_id)
    if repo is None or repo.organisation_id != organisation_id:
        raise ApiError("Repository not found in this organisation.", "repository")
    await repositories.check_for_region(repo, region)


def usable_plan_groups(organisations: set[UUID]) -> ColumnElement[bool]:
    """A WHERE clause over PlanGroup: the public ones and those dedicated to these organisations."""
    return or_(PlanGroup.organisation_id.is_(None), PlanGroup.organisation_id.in_(organisations))


async def _check_plan_group(session: AsyncSession, plan_group_id: UUID | None,
                            organisation_id: UUID) -> PlanGroup | None:
    if plan_group_id is None:
        return None
    group = await session.get(PlanGroup, plan_group_id)
    if group is None or group.organisation_id not in (None, organisation_id):
        raise ApiError("Plan group not found among those this organisation may use.", "plan_group")
    return group
