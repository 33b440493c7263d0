"""Every query on the containers table."""
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ManagedContainer


@dataclass(frozen=True)
class ContainerRecord:
    instance_id: UUID
    container_id: str
    environment_id: UUID
    release_id: UUID
    state: str
    restarts: int


async def load(session: AsyncSession) -> list[ContainerRecord]:
    rows = (await session.scalars(select(ManagedContainer))).all()
    return [
        ContainerRecord(r.instance_id, r.container_id, r.environment_id, r.release_id, r.state, r.restarts)
        for r in rows
    ]


async def save(session: AsyncSession, records: Iterable[ContainerRecord]) -> None:
    for record in records:
        values = {
            "instance_id": record.instance_id,
            "container_id": record.container_id,
            "environment_id": record.environment_id,
            "release_id": record.release_id,
            "state": record.state,
            "restarts": record.restarts,
            "updated_at": func.now(),
        }
        statement = insert(ManagedContainer).values(**values)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ManagedContainer.instance_id],
                set_={k: statement.excluded[k] for k in values if k != "instance_id"},
            )
        )


async def forget(session: AsyncSession, instance_ids: Iterable[UUID]) -> None:
    ids = list(instance_ids)
    if ids:
        await session.execute(delete(ManagedContainer).where(ManagedContainer.instance_id.in_(ids)))
