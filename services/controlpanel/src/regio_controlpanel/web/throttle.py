"""Throttling password guesses: after FAILURES_ALLOWED failed sign-ins with one email within
WINDOW, that email is refused until the oldest of them is older than WINDOW, whoever tries it
and whether or not a user has it (so the refusal tells nothing either).

By email rather than by client address: a guesser with many addresses is throttled all the
same. The price is that someone who knows a user's email can keep them out for a while."""
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import utcnow

from ..db.models import SignInFailure

FAILURES_ALLOWED = 5
WINDOW = timedelta(minutes=15)


def _key(email: str) -> str:
    return email.strip().lower()


async def refused_for(session: AsyncSession, email: str) -> timedelta | None:
    """How long ``email`` is still refused; None when it may try."""
    since = utcnow() - WINDOW
    recent = (await session.execute(
        select(SignInFailure.created_at).where(SignInFailure.email == _key(email), SignInFailure.created_at > since)
        .order_by(SignInFailure.created_at.desc()).limit(FAILURES_ALLOWED))).scalars().all()
    if len(recent) < FAILURES_ALLOWED:
        return None
    return recent[-1] + WINDOW - utcnow()


async def record_failure(session: AsyncSession, email: str) -> None:
    session.add(SignInFailure(email=_key(email)[:254], created_at=utcnow()))
    # Rows that no longer count go as new ones come: the table stays as small as the window.
    await session.execute(delete(SignInFailure).where(SignInFailure.created_at <= utcnow() - WINDOW))


async def forget_failures(session: AsyncSession, email: str) -> None:
    await session.execute(delete(SignInFailure).where(SignInFailure.email == _key(email)))

