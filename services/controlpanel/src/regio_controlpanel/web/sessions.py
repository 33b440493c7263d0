"""Browser sessions: a random value in an HttpOnly, SameSite=Lax cookie (Secure when the
control panel is reached over HTTPS), found server-side by its hash, with a CSRF token
that every form of the session must carry back."""
import hashlib
import hmac
import secrets
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import utcnow

from ..db.models import User, WebSession
from .passwords import verify_password_async

COOKIE = "regio_session"
LOGIN_CSRF_COOKIE = "regio_login_csrf"  # before there is a session: a double-submit token for the sign-in form
LIFETIME = timedelta(hours=12)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def is_https(request: Request) -> bool:
    """uvicorn sets the scheme from X-Forwarded-Proto when the proxy in front is trusted
    (--forwarded-allow-ips), so a TLS-terminating proxy makes the cookies Secure."""
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=is_https(request))


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    user = (await session.execute(select(User).where(func.lower(User.email) == email.strip().lower()))
            ).scalar_one_or_none()
    ok = await verify_password_async(password, user.password_hash if user else None)
    return user if ok else None


async def start(session: AsyncSession, user: User) -> tuple[WebSession, str]:
    """A new session and the cookie value that finds it; only its hash is stored."""
    value = secrets.token_urlsafe(32)
    web_session = WebSession(user_id=user.id, token_hash=_hash(value), csrf_token=secrets.token_urlsafe(32),
                             expires_at=utcnow() + LIFETIME)
    session.add(web_session)
    # Expired sessions of this user go now: nothing else needs to sweep them.
    await session.execute(delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < utcnow()))
    await session.flush()
    return web_session, value


async def find(session: AsyncSession, cookie: str | None) -> tuple[WebSession, User] | None:
    if not cookie:
        return None
    row = (await session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _hash(cookie), WebSession.expires_at > utcnow()))).first()
    return (row[0], row[1]) if row else None


async def end(session: AsyncSession, web_session: WebSession) -> None:
    await session.delete(web_session)
    await session.flush()


def csrf_matches(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())
