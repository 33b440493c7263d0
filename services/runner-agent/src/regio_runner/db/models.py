"""The runner schema: the containers this agent manages on its host, the jobs it ran, its
instances' runs (metered), and its outbox and inbox."""
from datetime import datetime
from uuid import UUID

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, MetaData, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regio_common.runtime import messaging_tables

SCHEMA = "runner"

metadata = MetaData(schema=SCHEMA)


class Base(DeclarativeBase):
    metadata = metadata


class ManagedContainer(Base):
    """One instance's container as the agent last observed it. Restart counts live here
    so that a restarted agent keeps counting where it left off.

    Every runner agent of a host (``regio up --runners N``) shares this schema: each reads,
    writes and forgets only the rows of its own runner."""

    __tablename__ = "containers"

    runner: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance_id: Mapped[UUID] = mapped_column(primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64))
    environment_id: Mapped[UUID]
    release_id: Mapped[UUID]
    state: Mapped[str] = mapped_column(String(16))
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # How its last run ended ("exit code 137, out of memory"): Docker forgets it once the
    # container is started again, and the heartbeat reports it for as long as the instance runs.
    last_exit: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Job(Base):
    """A one-off job this agent started, written before its container is created: a job with a
    row is never started again, whatever happens to its container or to the agent. It also
    holds how far the job's output reached the deployment log, and how the job ended."""

    __tablename__ = "jobs"

    job_id: Mapped[UUID] = mapped_column(primary_key=True)
    deployment_id: Mapped[UUID]
    label: Mapped[str] = mapped_column(String(255))
    container_id: Mapped[str | None] = mapped_column(String(64))
    # The timestamp Docker gave the last line of output that is in the outbox.
    shipped_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    # Set once it exited and all its output is in the outbox: then it is reported exited.
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class InstanceRun(Base):
    """One run of an instance's container, from Docker's StartedAt to its FinishedAt: what
    the instance meter sells. Written when the agent first sees the run, ended before the
    container is started again or removed, and metered in pieces: each piece's message goes
    into the outbox in the transaction that moves ``metered_until`` past it, so a restarted
    agent goes on from there and never sends a piece twice or skips one.

    Kept after it is metered to the end for as long as its container is there: the agent would
    otherwise take the exited container's last run for a new one."""

    __tablename__ = "instance_runs"
    __table_args__ = (Index("ix_instance_runs_runner", "runner"),)

    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    runner: Mapped[str] = mapped_column(String(255))
    instance_id: Mapped[UUID]
    environment_id: Mapped[UUID]
    memory_mb: Mapped[int] = mapped_column(Integer)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metered_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


outbox, inbox = messaging_tables(metadata)
