"""Members of an organisation: their roles, and scopes that narrow a role to some
applications or environments."""
from uuid import UUID

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, Environment, Membership, MembershipScope, Organisation, User
from ..domain.errors import ApiError, Conflict, NotFound, PermissionDenied
from .access import Action, Caller, Role


async def create_organisation(session: AsyncSession, caller: Caller, name: str) -> Organisation:
    """The caller becomes its owner."""
    org = Organisation(name=name)
    session.add(org)
    await session.flush()
    session.add(Membership(organisation_id=org.id, user_id=caller.user.id, role=Role.OWNER))
    await session.flush()
    return org


async def get_membership(session: AsyncSession, caller: Caller, membership_id: UUID) -> Membership:
    membership = await session.get(Membership, membership_id)
    if membership is None or not caller.can_see(membership.organisation_id):
        raise NotFound()
    return membership


async def scopes_of(session: AsyncSession, membership_ids: list[UUID]) -> dict[UUID, tuple[list[UUID], list[UUID]]]:
    rows = (await session.execute(select(MembershipScope).where(MembershipScope.membership_id.in_(membership_ids)))).scalars()
    found: dict[UUID, tuple[list[UUID], list[UUID]]] = {m: ([], []) for m in membership_ids}
    for s in rows:
        apps, envs = found[s.membership_id]
        (apps if s.application_id else envs).append(s.application_id or s.environment_id)
    return found


async def add_member(session: AsyncSession, caller: Caller, organisation_id: UUID, email: str, role: Role,
                     applications: list[UUID], environments: list[UUID]) -> tuple[Membership, User]:
    """A user not known yet is created, to sign in later; their access starts now."""
    caller.require_organisation(organisation_id, Action.ADMINISTER, "organisation")
    _may_grant(caller, organisation_id, role)
    email = email.strip().lower()
    if "@" not in email:
        raise ApiError("Enter an email address.", "email")
    user = (await session.execute(select(User).where(func.lower(User.email) == email))).scalar_one_or_none()
    if user is None:
        user = User(email=email)
        session.add(user)
        await session.flush()
    elif (await session.execute(select(Membership.id).where(
            Membership.organisation_id == organisation_id, Membership.user_id == user.id))).first():
        raise Conflict("This user is already a member; change their membership instead.", "email")
    membership = Membership(organisation_id=organisation_id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    await set_scopes(session, membership, applications, environments)
    return membership, user


async def update_member(session: AsyncSession, caller: Caller, membership: Membership, role: Role | None,
                        scopes: tuple[list[UUID], list[UUID]] | None) -> None:
    caller.require_organisation(membership.organisation_id, Action.ADMINISTER)
    if membership.role == Role.OWNER or role == Role.OWNER:
        _may_grant(caller, membership.organisation_id, Role.OWNER)
    if role is not None and role != membership.role:
        if membership.role == Role.OWNER:
            await _keep_an_owner(session, membership)
        membership.role = role
    if scopes is not None:
        await set_scopes(session, membership, *scopes)
    elif membership.role == Role.OWNER:
        await set_scopes(session, membership, [], [])
    await session.flush()


async def remove_member(session: AsyncSession, caller: Caller, membership: Membership) -> None:
    """Anyone may leave; admins remove others (owners only by an owner). Their tokens lose
    the organisation's objects with the next request."""
    if membership.user_id != caller.user.id:
        caller.require_organisation(membership.organisation_id, Action.ADMINISTER)
        if membership.role == Role.OWNER:
            _may_grant(caller, membership.organisation_id, Role.OWNER)
    if membership.role == Role.OWNER:
        await _keep_an_owner(session, membership)
    await session.delete(membership)
    await session.flush()


async def set_scopes(session: AsyncSession, membership: Membership, applications: list[UUID],
                     environments: list[UUID]) -> None:
    if membership.role == Role.OWNER and (applications or environments):
        raise ApiError("An owner's access cannot be narrowed.", "scopes")
    org = membership.organisation_id
    apps = set((await session.execute(select(Application.id).where(
        Application.id.in_(applications), Application.organisation_id == org))).scalars())
    if missing := set(applications) - apps:
        raise ApiError(f"Not applications of this organisation: {', '.join(map(str, sorted(missing)))}.",
                       "scopes.applications")
    envs = set((await session.execute(select(Environment.id).join(Application, Application.id == Environment.application_id)
                                      .where(Environment.id.in_(environments), Application.organisation_id == org))).scalars())
    if missing := set(environments) - envs:
        raise ApiError(f"Not environments of this organisation: {', '.join(map(str, sorted(missing)))}.",
                       "scopes.environments")
    await session.execute(delete(MembershipScope).where(MembershipScope.membership_id == membership.id))
    session.add_all([MembershipScope(membership_id=membership.id, application_id=a) for a in apps])
    session.add_all([MembershipScope(membership_id=membership.id, environment_id=e) for e in envs])
    await session.flush()


def _may_grant(caller: Caller, organisation_id: UUID, role: Role) -> None:
    if role == Role.OWNER and caller.grants[organisation_id].role != Role.OWNER:
        raise PermissionDenied("Only an owner can make or change owners.")


async def _keep_an_owner(session: AsyncSession, membership: Membership) -> None:
    # Locking the organisation serialises two owners demoting each other at once.
    await session.execute(select(Organisation.id).where(Organisation.id == membership.organisation_id).with_for_update())
    owners = (await session.execute(select(func.count()).select_from(Membership).where(
        Membership.organisation_id == membership.organisation_id, Membership.role == Role.OWNER))).scalar_one()
    if owners <= 1:
        raise ApiError("An organisation keeps at least one owner; make someone else owner first.", "role")
