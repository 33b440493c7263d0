"""Every query on the builds table."""
from uuid import UUID

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.states import BuildState, sources_of
from .models import builds


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


async def move(session: AsyncSession, build_id: UUID, new: BuildState, **values) -> Row | None:
    """Move a build to ``new`` if its current state allows it; the updated row, else None."""
    result = await session.execute(
        update(builds)
        .where(builds.c.id == build_id, builds.c.state.in_(sources_of(new)))
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
