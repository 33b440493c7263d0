"""Every query on the containers, jobs and instance runs tables."""
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .models import InstanceRun, Job, ManagedContainer


@dataclass(frozen=True)
class ContainerRecord:
    instance_id: UUID
    container_id: str
    environment_id: UUID
    release_id: UUID
    state: str
    restarts: int
    last_exit: str | None = None


# The containers table is shared by every agent of a host: each query names its runner.


async def load(session: AsyncSession, runner: str) -> list[ContainerRecord]:
    rows = (await session.scalars(select(ManagedContainer).where(ManagedContainer.runner == runner))).all()
    return [
        ContainerRecord(r.instance_id, r.container_id, r.environment_id, r.release_id, r.state, r.restarts,
                        r.last_exit)
        for r in rows
    ]


async def save(session: AsyncSession, runner: str, records: Iterable[ContainerRecord]) -> None:
    """One statement for all of them: a pass may change every instance of its runner at once."""
    rows = [{**asdict(record), "runner": runner, "updated_at": func.now()} for record in records]
    if not rows:
        return
    statement = insert(ManagedContainer).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ManagedContainer.runner, ManagedContainer.instance_id],
            set_={k: statement.excluded[k] for k in rows[0] if k not in ("runner", "instance_id")},
        )
    )


async def forget(session: AsyncSession, runner: str, instance_ids: Iterable[UUID]) -> None:
    ids = list(instance_ids)
    if ids:
        await session.execute(delete(ManagedContainer).where(ManagedContainer.runner == runner,
                                                             ManagedContainer.instance_id.in_(ids)))


# --- jobs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    job_id: UUID
    deployment_id: UUID
    label: str
    timeout_seconds: float
    container_id: str | None = None
    shipped_until: datetime | None = None
    timed_out: bool = False
    exit_code: int | None = None
    error: str | None = None
    finished_at: datetime | None = None


async def get_job(session: AsyncSession, job_id: UUID) -> JobRecord | None:
    row = await session.get(Job, job_id)
    if row is None:
        return None
    return JobRecord(row.job_id, row.deployment_id, row.label, row.timeout_seconds, row.container_id,
                     row.shipped_until, row.timed_out, row.exit_code, row.error, row.finished_at)


async def insert_job(session: AsyncSession, record: JobRecord) -> bool:
    """False if the job has a row already (another pass, or another agent of this runner, took it)."""
    inserted = await session.execute(
        insert(Job).values(**asdict(record)).on_conflict_do_nothing().returning(Job.job_id))
    return inserted.first() is not None


async def update_job(session: AsyncSession, job_id: UUID, **values) -> None:
    """Sets only the columns given, so two tasks of one job (its output, its timeout) never undo each other."""
    await session.execute(update(Job).where(Job.job_id == job_id).values(**values))


async def prune_jobs(session: AsyncSession, created_before: datetime) -> None:
    """Forgets old jobs: by then no controller asks for them any more."""
    await session.execute(delete(Job).where(Job.created_at < created_before))


# --- instance runs -----------------------------------------------------------------

RunKey = tuple[str, datetime]  # the container, and Docker's StartedAt of the run


async def load_runs(session: AsyncSession, runner: str) -> list[InstanceRun]:
    return list((await session.scalars(select(InstanceRun).where(InstanceRun.runner == runner))).all())


async def add_runs(session: AsyncSession, rows: list[dict]) -> None:
    """Runs seen for the first time; one another pass or agent wrote already is left as it is."""
    if rows:
        await session.execute(insert(InstanceRun).values(rows).on_conflict_do_nothing())


async def lock_runs(session: AsyncSession, keys: Iterable[RunKey]) -> list[InstanceRun]:
    """The runs, locked for the transaction: what is metered is decided from their rows alone."""
    keys = list(keys)
    if not keys:
        return []
    return list((await session.scalars(
        select(InstanceRun).where(tuple_(InstanceRun.container_id, InstanceRun.started_at).in_(keys))
        .order_by(InstanceRun.container_id, InstanceRun.started_at).with_for_update())).all())


async def forget_runs(session: AsyncSession, keys: Iterable[RunKey]) -> None:
    keys = list(keys)
    if keys:
        await session.execute(
            delete(InstanceRun).where(tuple_(InstanceRun.container_id, InstanceRun.started_at).in_(keys)))
