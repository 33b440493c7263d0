"""Every query on the builder's tables."""
from uuid import UUID

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.states import BuildState, sources_of
from .models import builds, cancelled_deployments


async def insert_queued(session: AsyncSession, **values) -> Row | None:
    """The new build, or None when the deployment has one already."""
    result = await session.execute(
        insert(builds)
        .values(state=BuildState.QUEUED, **values)
        .on_conflict_do_nothing(index_elements=[builds.c.deployment_id])
        .returning(builds)
    )
    return result.first()


async def lock_oldest_queued(session: AsyncSession) -> Row | None:
    # SKIP LOCKED: a second worker takes the next build instead of waiting for this one.
    result = await session.execute(
        select(builds.c.id)
        .where(builds.c.state == BuildState.QUEUED)
        .order_by(builds.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return result.first()


async def move(session: AsyncSession, build_id: UUID, new: BuildState, *, only_from: BuildState | None = None,
               **values) -> Row | None:
    """Move a build to ``new`` if its current state allows it (and is ``only_from``, when given);
    the updated row, else None."""
    sources = [s for s in sources_of(new) if only_from in (None, s)]
    result = await session.execute(
        update(builds)
        .where(builds.c.id == build_id, builds.c.state.in_(sources))
        .values(state=new, **values)
        .returning(builds)
    )
    return result.first()


async def ids_in_state(session: AsyncSession, state: BuildState) -> list[Row]:
    result = await session.execute(
        select(builds.c.id, builds.c.deployment_id).where(builds.c.state == state).with_for_update()
    )
    return list(result.all())


async def append_log(session: AsyncSession, build_id: UUID, text: str) -> None:
    await session.execute(update(builds).where(builds.c.id == build_id).values(log=builds.c.log + text))


async def set_commit(session: AsyncSession, build_id: UUID, commit: str) -> None:
    await session.execute(update(builds).where(builds.c.id == build_id).values(commit=commit))


async def latest_succeeded(session: AsyncSession, application_id: UUID, commit: str) -> Row | None:
    """The newest build of this application's commit that produced an image."""
    result = await session.execute(
        select(builds)
        .where(
            builds.c.application_id == application_id,
            builds.c.commit == commit,
            builds.c.state == BuildState.SUCCEEDED,
            builds.c.image.is_not(None),
        )
        .order_by(builds.c.finished_at.desc())
        .limit(1)
    )
    return result.first()


async def by_deployment(session: AsyncSession, deployment_id: UUID) -> Row | None:
    result = await session.execute(select(builds).where(builds.c.deployment_id == deployment_id))
    return result.first()


async def lock_by_deployment(session: AsyncSession, deployment_id: UUID) -> Row | None:
    result = await session.execute(
        select(builds).where(builds.c.deployment_id == deployment_id).with_for_update()
    )
    return result.first()


# --- cancelled deployments -------------------------------------------------------------


async def lock_deployment(session: AsyncSession, deployment_id: UUID) -> None:
    """Serialises a deployment's cancel and its build request until the transaction ends. An
    advisory lock, because a row lock cannot cover a build that is not inserted yet."""
    key = int.from_bytes(deployment_id.bytes[:8], "big", signed=True)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def record_cancellation(session: AsyncSession, deployment_id: UUID, reason: str) -> bool:
    """Remembers the cancelled deployment; False if it was cancelled before."""
    result = await session.execute(
        insert(cancelled_deployments)
        .values(deployment_id=deployment_id, reason=reason)
        .on_conflict_do_nothing()
        .returning(cancelled_deployments.c.deployment_id)
    )
    return result.first() is not None


async def cancellation_reason(session: AsyncSession, deployment_id: UUID) -> str | None:
    """Why the deployment was cancelled; None if it was not."""
    return await session.scalar(
        select(cancelled_deployments.c.reason).where(cancelled_deployments.c.deployment_id == deployment_id)
    )
