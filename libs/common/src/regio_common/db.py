"""Database engine and session factory, shared by every service."""
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, **kwargs) -> AsyncEngine:
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: handlers publish what they just wrote.
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    async with factory() as session, session.begin():
        yield session


class BoundedSessions:
    """Sessions of ``factory``, at most ``limit`` at once: the share of the pool one party's
    work may hold (a region's consumers and relay in the control panel), so that no one of
    them can take every connection the others and the API need. Used as a sessionmaker:
    ``async with sessions() as session``."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], limit: int):
        self._factory = factory
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        async with self._slots, self._factory() as session:
            yield session
