"""Throttling password guesses: after FAILURES_ALLOWED failed sign-ins with one email within
WINDOW, that email is refused until the oldest of them is older than WINDOW, whoever tries it
and whether or not a user has it (so the refusal tells nothing either).

By email rather than by client address: a guesser with many addresses is throttled all the
same. The price is that someone who knows a user's email can keep them out for a while.

A guess is counted as a failure before its password is checked, and forgotten if it was
right: counted after, guesses sent at once would all be checked before any was counted."""
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import utcnow

from ..db.models import SignInFailure

FAILURES_ALLOWED = 5
WINDOW = timedelta(minutes=15)
# The first key of the advisory locks that serialise the guesses of one email (the second is
# the email's hash): no other lock of the control panel's database uses it.
LOCK_SPACE = 0x5349474E  # "SIGN"


def _key(email: str) -> str:
    return email.strip().lower()[:254]


async def refused_for(session: AsyncSession, email: str) -> timedelta | None:
    """How long ``email`` is still refused; None when it may try."""
    since = utcnow() - WINDOW
    recent = (await session.execute(
        select(SignInFailure.created_at).where(SignInFailure.email == _key(email), SignInFailure.created_at > since)
        .order_by(SignInFailure.created_at.desc()).limit(FAILURES_ALLOWED))).scalars().all()
    if len(recent) < FAILURES_ALLOWED:
        return None
    return recent[-1] + WINDOW - utcnow()


async def count_guess(sessions: async_sessionmaker[AsyncSession], email: str) -> timedelta | None:
    """Counts a guess with ``email`` as failed, unless the email is refused: then how long it
    still is. In a transaction of its own, committed before the password is checked, and under
    a lock per email, so that of guesses sent at once no more than FAILURES_ALLOWED are let
    through (a count and an insert without the lock would all see the same count)."""
    async with sessions() as session, session.begin():
        await session.execute(select(func.pg_advisory_xact_lock(LOCK_SPACE, func.hashtext(_key(email)))))
        wait = await refused_for(session, email)
        if wait is not None:
            return wait
        session.add(SignInFailure(email=_key(email), created_at=utcnow()))
        # Rows that no longer count go as new ones come: the table stays as small as the window.
        await session.execute(delete(SignInFailure).where(SignInFailure.created_at <= utcnow() - WINDOW))
    return None


async def forget_failures(session: AsyncSession, email: str) -> None:
    """After a right password: its own guess and the failures before it no longer count."""
    await session.execute(delete(SignInFailure).where(SignInFailure.email == _key(email)))
