"""The controller schema: runners, releases, workloads (what each environment serves),
instances (placements), rollouts, jobs (their release commands), the environments retired
for good and the deployments cancelled."""
from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regio_common.runtime import messaging_tables

SCHEMA = "controller"

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    },
)


class Base(DeclarativeBase):
    metadata = metadata


class Runner(Base):
    """A runner host, as its heartbeats describe it."""

    __tablename__ = "runners"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    memory_mb: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    labels: Mapped[dict] = mapped_column(JSONB, default=dict)
    last_heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16))
    # Revision of the last desired state written to the runner's KV key.
    desired_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by an operator: a cordoned runner gets no new instances; a draining one also has its
    # instances moved to other runners (the routes follow), then runs nothing.
    cordoned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Release(Base):
    """Immutable: image + sealed environment + size. A rollback is a new rollout of an old release."""

    __tablename__ = "releases"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    environment_id: Mapped[UUID] = mapped_column(index=True)
    image: Mapped[str] = mapped_column(String(512))
    port: Mapped[int] = mapped_column(Integer)
    sealed_env: Mapped[str] = mapped_column(Text)
    memory_mb: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float, default=0.25, server_default="0.25")
    health_check_path: Mapped[str] = mapped_column(String(1024), default="/")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Workload(Base):
    """What one environment serves now: the release and deployment its routes point at."""

    __tablename__ = "workloads"
    __table_args__ = (
        # The traffic watch scans for reports due and forwards expired, several times a second.
        Index("ix_workloads_traffic_due", "environment_id",
              postgresql_where=text("NOT traffic_reported OR traffic = 'forward'")),
    )

    environment_id: Mapped[UUID] = mapped_column(primary_key=True)
    application_id: Mapped[UUID]
    current_release_id: Mapped[UUID | None] = mapped_column(ForeignKey("releases.id"))
    # The rollout whose healthy instances are the routes' upstreams (a release may be rolled out twice).
    current_deployment_id: Mapped[UUID | None]
    hosts: Mapped[list] = mapped_column(JSONB, default=list)  # served: the primary first, then aliases
    redirect_hosts: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")  # 301 to the primary
    https_redirect: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # How many instances it should run: set by its rollouts and by scaling. The healer keeps
    # this many healthy, replacing lost ones and adding or removing instances of the current release.
    instances: Mapped[int | None] = mapped_column(Integer)
    dedicated_to: Mapped[UUID | None]  # the organisation whose runners alone may run it
    route_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    applied_route_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How the ingress treats its hosts (Traffic: serve, hold, forward), as the control panel set it
    # during a migration; every route published for the workload carries it (routes/table.py).
    traffic: Mapped[str] = mapped_column(String(16), default="serve", server_default="serve")
    traffic_change_id: Mapped[UUID | None]  # the EnvironmentTrafficSet that set it
    traffic_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    traffic_revision: Mapped[int | None] = mapped_column(Integer)  # the route revision carrying the change
    # EnvironmentTrafficChanged sent for traffic_change_id; false: the traffic watch still waits for it.
    traffic_reported: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    forward_to: Mapped[str | None] = mapped_column(String(255))  # host:port of the region it moved to
    forward_hosts: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    forward_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # then forgotten here
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Instance(Base):
    """One container of a release placed on a runner."""

    __tablename__ = "instances"
    __table_args__ = (
        Index(None, "runner", "state"),
        Index(None, "environment_id", "state"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    environment_id: Mapped[UUID]
    release_id: Mapped[UUID] = mapped_column(ForeignKey("releases.id"))
    deployment_id: Mapped[UUID] = mapped_column(index=True)
    runner: Mapped[str] = mapped_column(ForeignKey("runners.name"))
    state: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Rollout(Base):
    """One deployment's rollout of a release; its row is where a restarted controller resumes."""

    __tablename__ = "rollouts"
    __table_args__ = (
        Index(None, "environment_id", "created_at"),
        # The rollout worker scans only unfinished rollouts.
        Index("ix_rollouts_unfinished", "created_at", postgresql_where="state IN ('pending', 'running')"),
    )

    deployment_id: Mapped[UUID] = mapped_column(primary_key=True)
    environment_id: Mapped[UUID]
    application_id: Mapped[UUID]
    release_id: Mapped[UUID] = mapped_column(ForeignKey("releases.id"))
    instances: Mapped[int] = mapped_column(Integer)
    # The routing it was requested with; a hosts change before it routes replaces it.
    hosts: Mapped[list] = mapped_column(JSONB, default=list)
    redirect_hosts: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    https_redirect: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    sanity_timeout_seconds: Mapped[float] = mapped_column(Float)
    # The application's release commands when it was deployed, [{"label", "command"}] in order.
    release_commands: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    release_command_timeout_seconds: Mapped[float] = mapped_column(Float, default=600.0, server_default="600")
    dedicated_to: Mapped[UUID | None]  # the organisation whose runners alone may run it
    state: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(32))  # the step last announced
    # Set when finalizing moved the routes: what to move them back to if the rollout fails.
    route_revision: Mapped[int | None] = mapped_column(Integer)
    previous_release_id: Mapped[UUID | None]
    previous_deployment_id: Mapped[UUID | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One release command of a rollout, run as a one-off job on a runner. Written before the
    job reaches the runner's desired state, so a restarted controller waits for the job it
    started, and never runs a command that finished a second time."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("deployment_id", "position"),
        Index(None, "runner", "state"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    deployment_id: Mapped[UUID]
    environment_id: Mapped[UUID] = mapped_column(index=True)
    release_id: Mapped[UUID] = mapped_column(ForeignKey("releases.id"))
    position: Mapped[int] = mapped_column(Integer)  # among the rollout's release commands
    label: Mapped[str] = mapped_column(String(255))
    command: Mapped[str] = mapped_column(Text)
    runner: Mapped[str] = mapped_column(ForeignKey("runners.name"))
    timeout_seconds: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, besides its exit code
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RetiredEnvironment(Base):
    """An environment the control panel deleted. Kept after everything else of it is gone, so
    a command that was sent before the deletion but arrives after it is refused."""

    __tablename__ = "retired_environments"

    environment_id: Mapped[UUID] = mapped_column(primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DepartedEnvironment(Base):
    """An environment that left the region (a migration away ended its forward, or one here
    rolled back), with the last revision of its route: the ingress keeps that revision and
    refuses older ones, so if the environment comes back its routes go on from there."""

    __tablename__ = "departed_environments"

    environment_id: Mapped[UUID] = mapped_column(primary_key=True)
    route_revision: Mapped[int] = mapped_column(Integer)


class CancelledDeployment(Base):
    """A deployment the control panel cancelled. The cancel is an event and the rollout a command,
    so the cancel may arrive first: the RolloutRequested arriving after it is refused."""

    __tablename__ = "cancelled_deployments"

    deployment_id: Mapped[UUID] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    cancelled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


outbox, inbox = messaging_tables(metadata)
