"""Who is calling, and what they may do where.

Every object belongs to an organisation; a caller acts there through a membership
with a role, possibly narrowed to some applications or environments. An object
the caller cannot see is reported as not found (404), never as forbidden, so its
existence does not leak; an object they can see but not change is a 403.
"""
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, Environment, Membership, MembershipScope, User
from ..domain.errors import ApiError, NotFound, PermissionDenied


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    BILLING = "billing"


class Action(StrEnum):
    VIEW = "view"              # applications, environments, deployments, logs, variables
    OPERATE = "operate"        # deploy, scale (within the plan), variables, domains, service instances, backups
    MANAGE = "manage"          # create, change and delete applications, environments, repositories
    ADMINISTER = "administer"  # members and their roles, the audit trail
    BILLING = "billing"        # plans and subscriptions


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset(Action),
    Role.MEMBER: frozenset({Action.VIEW, Action.OPERATE}),
    Role.BILLING: frozenset({Action.BILLING}),
}


@dataclass(frozen=True)
class Grant:
    """One membership: the role, and when narrowed, what it is narrowed to."""

    role: Role
    applications: frozenset[UUID] = frozenset()
    environments: dict[UUID, UUID] = field(default_factory=dict)  # environment → its application

    @property
    def scoped(self) -> bool:
        return bool(self.applications or self.environments)

    def allows(self, action: Action) -> bool:
        return action in ALLOWED[self.role]


@dataclass
class Caller:
    user: User
    grants: dict[UUID, Grant]  # organisation → grant

    @property
    def organisations(self) -> set[UUID]:
        """Every organisation the caller is a member of, whatever the role."""
        return set(self.grants)

    def can_see(self, organisation_id: UUID) -> bool:
        return organisation_id in self.grants

    # --- checks on one object --------------------------------------------------------

    def require_organisation(self, organisation_id: UUID, action: Action, field: str | None = None) -> Grant:
        """An action on the organisation as a whole: needs a membership not narrowed by scopes."""
        grant = self.grants.get(organisation_id)
        if grant is None:
            raise _missing("Organisation", field)
        if not grant.allows(action) or (grant.scoped and action != Action.VIEW):
            raise PermissionDenied(f"Your role ({grant.role}) in this organisation does not allow this.")
        return grant

    def require_application(self, app: Application, action: Action, field: str | None = None) -> None:
        grant = self.grants.get(app.organisation_id)
        # Billing members see no application, but may choose one's plan group.
        if grant is None or not (grant.allows(Action.VIEW) or grant.allows(action)):
            raise _missing("Application", field)
        whole = not grant.scoped or app.id in grant.applications
        if not whole and app.id not in grant.environments.values():
            raise _missing("Application", field)
        if not grant.allows(action):
            raise PermissionDenied(f"Your role ({grant.role}) does not allow this on this application.")
        if not whole and action != Action.VIEW:
            raise PermissionDenied("Your access covers only some environments of this application.")

    def require_environment(self, env: Environment, app: Application, action: Action, field: str | None = None) -> None:
        grant = self.grants.get(app.organisation_id)
        if grant is None or not grant.allows(Action.VIEW):
            raise _missing("Environment", field)
        if grant.scoped and app.id not in grant.applications and env.id not in grant.environments:
            raise _missing("Environment", field)
        if not grant.allows(action):
            raise PermissionDenied(f"Your role ({grant.role}) does not allow this on this environment.")

    # --- filters for lists -------------------------------------------------------------

    def _viewing(self) -> tuple[set[UUID], set[UUID], set[UUID]]:
        whole_orgs, apps, envs = set(), set(), set()
        for org, grant in self.grants.items():
            if not grant.allows(Action.VIEW):
                continue
            if grant.scoped:
                apps |= grant.applications
                envs |= set(grant.environments)
            else:
                whole_orgs.add(org)
        return whole_orgs, apps, envs

    def visible_applications(self) -> ColumnElement[bool]:
        """A WHERE clause over Application for the applications this caller may view."""
        whole_orgs, apps, _ = self._viewing()
        env_apps = {a for g in self.grants.values() if g.allows(Action.VIEW) for a in g.environments.values()}
        return _any(Application.organisation_id.in_(whole_orgs), Application.id.in_(apps | env_apps))

    def visible_environments(self) -> ColumnElement[bool]:
        """A WHERE clause over Environment joined with Application."""
        whole_orgs, apps, envs = self._viewing()
        return _any(Application.organisation_id.in_(whole_orgs), Environment.application_id.in_(apps),
                    Environment.id.in_(envs))


def _any(*clauses: ColumnElement[bool]) -> ColumnElement[bool]:
    return or_(false(), *clauses)


def _missing(what: str, field: str | None) -> ApiError:
    # Named in the body's field when the object was given in the request body (a 400),
    # else a plain 404 for an object in the path.
    return ApiError(f"{what} not found.", field) if field else NotFound()


async def load_grants(session: AsyncSession, user_id: UUID) -> dict[UUID, Grant]:
    """Read on every request, never cached: a removed member loses access at once."""
    memberships = (await session.execute(select(Membership).where(Membership.user_id == user_id))).scalars().all()
    scopes = (await session.execute(
        select(MembershipScope.membership_id, MembershipScope.application_id, MembershipScope.environment_id,
               Environment.application_id)
        .outerjoin(Environment, Environment.id == MembershipScope.environment_id)
        .where(MembershipScope.membership_id.in_([m.id for m in memberships])))).all()
    grants = {}
    for m in memberships:
        mine = [s for s in scopes if s[0] == m.id]
        grants[m.organisation_id] = Grant(
            role=Role(m.role),
            applications=frozenset(s[1] for s in mine if s[1] is not None),
            environments={s[2]: s[3] for s in mine if s[2] is not None})
    return grants
