"""API tokens: random, shown once, stored as a hash, revocable, with last-used time."""
import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import utcnow

from ..db.models import ApiToken, Membership, User

PREFIX = "regio_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # avoid a write on every request


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(session: AsyncSession, user: User, name: str = "") -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(token)))
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> tuple[User, dict[UUID, str]] | None:
    row = (await session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
        await session.execute(update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=now))
    roles = (await session.execute(
        select(Membership.organisation_id, Membership.role).where(Membership.user_id == user.id))).all()
    return user, {org: role for org, role in roles}
