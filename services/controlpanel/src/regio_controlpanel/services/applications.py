"""Use cases for repositories, applications, environments and their variables."""
import re
import secrets
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import (
    Application,
    Environment,
    EnvironmentVariable,
    Organisation,
    PlanGroup,
    Region,
    Repository,
)
from ..domain.environments import DEFAULT_ENVIRONMENTS
from ..domain.errors import ApiError, Conflict, NotFound
from .access import Caller
from .crypto import Vault

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GIT_URL = re.compile(r"^(file|https?|git)://\S+$")  # what the builder clones


async def organisation_for(session: AsyncSession, caller: Caller, organisation_id: UUID, field: str = "organisation") -> Organisation:
    org = await session.get(Organisation, organisation_id) if caller.can_see(organisation_id) else None
    if org is None:
        raise ApiError("Organisation not found.", field)
    return org


async def get_application(session: AsyncSession, caller: Caller, application_id: UUID) -> Application:
    app = await session.get(Application, application_id)
    if app is None or not caller.can_see(app.organisation_id):
        raise NotFound()
    return app


async def get_environment(session: AsyncSession, caller: Caller, environment_id: UUID, field: str | None = None) -> tuple[Environment, Application]:
    row = (await session.execute(
        select(Environment, Application).join(Application, Application.id == Environment.application_id)
        .where(Environment.id == environment_id))).first()
    if row is None or not caller.can_see(row[1].organisation_id):
        if field:
            raise ApiError("Environment not found.", field)
        raise NotFound()
    return row[0], row[1]


async def create_repository(session: AsyncSession, caller: Caller, organisation_id: UUID, url: str) -> Repository:
    await organisation_for(session, caller, organisation_id)
    if not GIT_URL.match(url.strip()):
        raise ApiError("Enter a git URL: file://, http://, https:// or git://.", "url")
    repo = Repository(organisation_id=organisation_id, url=url.strip())
    session.add(repo)
    await session.flush()
    return repo


async def create_application(session: AsyncSession, caller: Caller, vault: Vault, *, name: str, slug: str,
                             organisation_id: UUID, region_id: UUID | None, repository_id: UUID | None,
                             branch: str, plan_group_id: UUID | None) -> Application:
    await organisation_for(session, caller, organisation_id)
    if not SLUG.match(slug):
        raise ApiError("Use lowercase letters, digits and hyphens (at most 63).", "slug")
    region = await _region(session, caller, region_id)
    if repository_id is not None:
        repo = await session.get(Repository, repository_id)
        if repo is None or repo.organisation_id != organisation_id:
            raise ApiError("Repository not found in this organisation.", "repository")
    if plan_group_id is not None and await session.get(PlanGroup, plan_group_id) is None:
        raise ApiError("Plan group not found.", "plan_group")
    if (await session.execute(select(Application.id).where(Application.slug == slug))).first():
        raise Conflict("An application with this slug already exists.", "slug")
    app = Application(name=name, slug=slug, organisation_id=organisation_id, region_id=region.id,
                      repository_id=repository_id, plan_group_id=plan_group_id)
    session.add(app)
    try:
        await session.flush()
    except IntegrityError as e:  # a concurrent create with the same slug
        raise Conflict("An application with this slug already exists.", "slug") from e
    for env_slug in DEFAULT_ENVIRONMENTS:
        session.add(Environment(application_id=app.id, slug=env_slug, branch=branch,
                                secret_key_encrypted=vault.encrypt(secrets.token_urlsafe(48))))
    await session.flush()
    return app


async def _region(session: AsyncSession, caller: Caller, region_id: UUID | None) -> Region:
    if region_id is None:
        region = (await session.execute(select(Region).where(Region.is_default))).scalars().first()
    else:
        region = await session.get(Region, region_id)
    if region is None or (region.organisation_id is not None and not caller.can_see(region.organisation_id)):
        raise ApiError("Region not found.", "region")
    return region


async def set_variable(session: AsyncSession, caller: Caller, vault: Vault, *, environment_id: UUID, name: str,
                       value: str, is_sensitive: bool) -> EnvironmentVariable:
    await get_environment(session, caller, environment_id, field="environment")
    if not VARIABLE_NAME.match(name):
        raise ApiError("Use letters, digits and underscores, not starting with a digit.", "name")
    existing = (await session.execute(select(EnvironmentVariable).where(
        EnvironmentVariable.environment_id == environment_id, EnvironmentVariable.name == name))).scalar_one_or_none()
    if existing is not None:
        raise Conflict(f"Variable {name} already exists in this environment; update it instead.", "name")
    variable = EnvironmentVariable(environment_id=environment_id, name=name, is_sensitive=is_sensitive,
                                   value=None if is_sensitive else value,
                                   value_encrypted=vault.encrypt(value) if is_sensitive else None)
    session.add(variable)
    await session.flush()
    return variable


async def variables_of(session: AsyncSession, vault: Vault, environment_id: UUID) -> dict[str, str]:
    rows = (await session.execute(select(EnvironmentVariable).where(
        EnvironmentVariable.environment_id == environment_id))).scalars()
    return {v.name: vault.decrypt(v.value_encrypted) if v.is_sensitive else (v.value or "") for v in rows}


async def sensitive_names(session: AsyncSession, environment_id: UUID) -> set[str]:
    return set((await session.execute(select(EnvironmentVariable.name).where(
        EnvironmentVariable.environment_id == environment_id, EnvironmentVariable.is_sensitive))).scalars())
