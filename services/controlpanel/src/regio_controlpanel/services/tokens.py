"""API tokens: random, shown once, stored as a hash, revocable, with last-used time."""
import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import utcnow

from ..db.models import ApiToken, User
from .access import Grant, load_grants

PREFIX = "regio_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # avoid a write on every request


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(session: AsyncSession, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new token and its secret; only the hash is kept, so the secret is shown this once."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(secret))
    session.add(token)
    await session.flush()
    return token, secret


async def create(session: AsyncSession, user: User, name: str = "") -> str:
    return (await issue(session, user, name))[1]


async def authenticate(session: AsyncSession, token: str) -> tuple[User, dict[UUID, Grant]] | None:
    row = (await session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
        # The row stays locked until the request's transaction ends, which may take seconds (a
        # DNS look-up, a database made): the token's other requests skip the update rather
        # than queue behind that one, which records the use anyway.
        unlocked = (select(ApiToken.id).where(ApiToken.id == api_token.id)
                    .with_for_update(skip_locked=True).scalar_subquery())
        await session.execute(update(ApiToken).where(ApiToken.id == unlocked).values(last_used_at=now))
    return user, await load_grants(session, user.id)


async def revoke(session: AsyncSession, user: User, token_id: UUID) -> ApiToken | None:
    """Revoked at once: the next request with it is refused."""
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return None
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token
