"""Every query the controller runs. Callers own the transaction; nothing here commits."""
from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import String, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import array, distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import RolloutRequested, Traffic
from regio_common.plans import cpu_share
from regio_common.runners import RunnerHeartbeat

from ..domain.states import (
    ACTIVE_STATES,
    UNFINISHED_ROLLOUT_STATES,
    InstanceState,
    JobState,
    RolloutState,
    RunnerState,
    sources_of,
)
from .models import (
    CancelledDeployment,
    DepartedEnvironment,
    Instance,
    Job,
    Release,
    RetiredEnvironment,
    Rollout,
    Runner,
    Workload,
)

# --- runners -------------------------------------------------------------------------


async def upsert_runners(session: AsyncSession, heartbeats: list[tuple[RunnerHeartbeat, datetime, RunnerState]]) -> None:
    """Each runner's row from its latest heartbeat, in one statement; in name order, so two
    writers never lock the same rows in different orders."""
    if not heartbeats:
        return
    rows = [dict(name=h.runner, address=h.address, memory_mb=h.memory_mb, cpus=h.cpus, labels=h.labels,
                 last_heartbeat_at=seen_at, state=state)
            for h, seen_at, state in sorted(heartbeats, key=lambda item: item[0].runner)]
    stmt = pg_insert(Runner).values(rows)
    newer = stmt.excluded.last_heartbeat_at >= Runner.last_heartbeat_at
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Runner.name],
            set_={k: stmt.excluded[k] for k in rows[0] if k != "name"},
            where=newer,  # a replayed old heartbeat never overwrites a newer one
        )
    )


async def mark_runner_states(session: AsyncSession, lost: set[str]) -> list[str]:
    """The runners named become lost, the others ready; returns the names newly lost."""
    newly = list(await session.scalars(
        update(Runner)
        .where(Runner.name.in_(lost), Runner.state != RunnerState.LOST)
        .values(state=RunnerState.LOST)
        .returning(Runner.name)
    ))
    await session.execute(
        update(Runner)
        .where(Runner.name.not_in(lost), Runner.state != RunnerState.READY)
        .values(state=RunnerState.READY)
    )
    return newly


async def desired_revisions(session: AsyncSession) -> dict[str, int]:
    """Every runner with the revision of the last desired state written for it."""
    return dict((await session.execute(select(Runner.name, Runner.desired_revision))).all())


# Placements are serialised by this one lock rather than by locking every runner's row: row
# locks would also queue behind each heartbeat's update of its runner, and taken in another
# order by another writer they deadlock.
PLACEMENT_LOCK = 0x5265_6769_6F50_6C61  # "RegioPla"


async def lock_ready_runners(session: AsyncSession) -> list[Runner]:
    """Runners that may take new instances (ready, neither cordoned nor draining), with the
    region's placement lock held until the transaction ends, so that concurrent placements
    never both spend the same free memory."""
    await session.execute(select(func.pg_advisory_xact_lock(PLACEMENT_LOCK)))
    return list(
        await session.scalars(
            select(Runner)
            .where(Runner.state == RunnerState.READY, Runner.cordoned.is_(False), Runner.draining.is_(False))
            .order_by(Runner.name)
        )
    )


async def memory_in_use(session: AsyncSession, environment_id: UUID) -> dict[str, tuple[int, int, int]]:
    """Per runner: memory held by active instances and running jobs, how many of those
    instances belong to ``environment_id``, and the bytes of their sealed environments (what
    the runner's desired state carries)."""
    rows = await session.execute(
        select(
            Instance.runner,
            func.coalesce(func.sum(Release.memory_mb), 0),
            func.count().filter(Instance.environment_id == environment_id),
            func.coalesce(func.sum(func.octet_length(Release.sealed_env)), 0),
        )
        .join(Release, Release.id == Instance.release_id)
        .where(Instance.state.in_(ACTIVE_STATES))
        .group_by(Instance.runner)
    )
    usage = {runner: (int(used), int(mine), int(env_bytes)) for runner, used, mine, env_bytes in rows}
    jobs = await session.execute(
        select(Job.runner, func.sum(Release.memory_mb), func.sum(func.octet_length(Release.sealed_env)))
        .join(Release, Release.id == Job.release_id)
        .join(Rollout, Rollout.deployment_id == Job.deployment_id)
        .where(Job.state == JobState.RUNNING, Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
        .group_by(Job.runner)
    )
    for runner, used, env_bytes in jobs:
        held, mine, carried = usage.get(runner, (0, 0, 0))
        usage[runner] = (held + int(used), mine, carried + int(env_bytes))
    return usage


async def unschedulable_runners(session: AsyncSession) -> set[str]:
    """Runners an operator cordoned or is draining: they take no new instances."""
    return set(await session.scalars(select(Runner.name).where(or_(Runner.cordoned, Runner.draining))))


async def runners_with_usage(session: AsyncSession) -> list[tuple[Runner, int, int]]:
    """Every runner with the memory and the number of instances it is asked to run."""
    active = and_(Instance.runner == Runner.name, Instance.state.in_(ACTIVE_STATES))
    rows = await session.execute(
        select(Runner, func.coalesce(func.sum(Release.memory_mb), 0), func.count(Instance.id))
        .outerjoin(Instance, active)
        .outerjoin(Release, Release.id == Instance.release_id)
        .group_by(Runner.name)
        .order_by(Runner.name)
    )
    return [(runner, int(used), int(count)) for runner, used, count in rows]


async def next_desired_revisions(session: AsyncSession, runners: Iterable[str]) -> dict[str, int]:
    """Takes the next desired-state revision of each runner; unknown runners are left out.
    The rows are locked in name order first: an UPDATE locks them in whatever order it scans,
    and two batches sharing runners would deadlock."""
    names = list(await session.scalars(
        select(Runner.name).where(Runner.name.in_(list(runners))).order_by(Runner.name)
        .with_for_update(key_share=True)))
    rows = await session.execute(
        update(Runner)
        .where(Runner.name.in_(names))
        .values(desired_revision=Runner.desired_revision + 1)
        .returning(Runner.name, Runner.desired_revision)
    )
    return {name: revision for name, revision in rows}


async def desired_instances(session: AsyncSession, runners: Iterable[str]) -> Sequence[tuple[Instance, Release]]:
    """The instances the runners are to run, oldest first."""
    rows = await session.execute(
        select(Instance, Release)
        .join(Release, Release.id == Instance.release_id)
        .where(Instance.runner.in_(list(runners)), Instance.state.in_(ACTIVE_STATES))
        .order_by(Instance.created_at, Instance.id)
    )
    return rows.all()


async def desired_jobs(session: AsyncSession, runners: Iterable[str]) -> Sequence[tuple[Job, Release]]:
    """The runners' jobs still waited for: running, of a rollout that still runs. A rollout
    ended any other way (failed, cancelled) takes its jobs off the runner with it."""
    rows = await session.execute(
        select(Job, Release)
        .join(Release, Release.id == Job.release_id)
        .join(Rollout, Rollout.deployment_id == Job.deployment_id)
        .where(Job.runner.in_(list(runners)), Job.state == JobState.RUNNING,
               Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
        .order_by(Job.created_at, Job.id)
    )
    return rows.all()


# --- releases, workloads, rollouts ---------------------------------------------------


async def record_rollout(session: AsyncSession, request: RolloutRequested, sanity_timeout_seconds: float) -> bool:
    """Stores the release, the environment's workload and the rollout; False if it was known."""
    await session.execute(
        pg_insert(Release)
        .values(id=request.release_id, environment_id=request.environment_id, image=request.image,
                port=request.port, sealed_env=request.sealed_env, memory_mb=request.memory_mb,
                cpus=cpu_share(request.memory_mb), health_check_path=request.health_check_path or "/")
        .on_conflict_do_nothing()
    )
    # An environment that was here before goes on from its last route revision.
    departed = select(DepartedEnvironment.route_revision).where(
        DepartedEnvironment.environment_id == request.environment_id).scalar_subquery()
    await session.execute(
        pg_insert(Workload)
        .values(environment_id=request.environment_id, application_id=request.application_id, hosts=[],
                route_revision=func.coalesce(departed, 0), applied_route_revision=func.coalesce(departed, 0))
        .on_conflict_do_nothing()
    )
    inserted = await session.execute(
        pg_insert(Rollout)
        .values(deployment_id=request.deployment_id, environment_id=request.environment_id,
                application_id=request.application_id, release_id=request.release_id,
                instances=request.instances, hosts=list(request.hosts),
                redirect_hosts=list(request.redirect_hosts), https_redirect=request.https_redirect,
                sanity_timeout_seconds=sanity_timeout_seconds,
                release_commands=[c.model_dump() for c in request.release_commands],
                release_command_timeout_seconds=request.release_command_timeout_seconds,
                dedicated_to=request.dedicated_to, state=RolloutState.PENDING)
        .on_conflict_do_nothing()
        .returning(Rollout.deployment_id)
    )
    return inserted.first() is not None


async def lock_environment(session: AsyncSession, environment_id: UUID) -> None:
    """Serialises the commands of one environment until the transaction ends. An advisory
    lock, because a row lock cannot cover a workload that is not inserted yet; two
    environments sharing a key only wait for each other."""
    await _advisory_lock(session, environment_id)


async def lock_deployment(session: AsyncSession, deployment_id: UUID) -> None:
    """Serialises a deployment's rollout request and its cancel until the transaction ends
    (advisory, as lock_environment: the rollout may not be inserted yet)."""
    await _advisory_lock(session, deployment_id)


async def _advisory_lock(session: AsyncSession, id_: UUID) -> None:
    key = int.from_bytes(id_.bytes[:8], "big", signed=True)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def is_retired(session: AsyncSession, environment_id: UUID) -> bool:
    return await session.get(RetiredEnvironment, environment_id) is not None


async def record_retirement(session: AsyncSession, environment_id: UUID) -> bool:
    """Stores the environment's tombstone; False if it was retired before."""
    inserted = await session.execute(
        pg_insert(RetiredEnvironment)
        .values(environment_id=environment_id)
        .on_conflict_do_nothing()
        .returning(RetiredEnvironment.environment_id)
    )
    return inserted.first() is not None


async def record_cancellation(session: AsyncSession, deployment_id: UUID, reason: str) -> bool:
    """Remembers the cancelled deployment; False if it was cancelled before."""
    inserted = await session.execute(
        pg_insert(CancelledDeployment)
        .values(deployment_id=deployment_id, reason=reason)
        .on_conflict_do_nothing()
        .returning(CancelledDeployment.deployment_id)
    )
    return inserted.first() is not None


async def cancellation_reason(session: AsyncSession, deployment_id: UUID) -> str | None:
    """Why the deployment was cancelled; None if it was not."""
    return await session.scalar(select(CancelledDeployment.reason)
                                .where(CancelledDeployment.deployment_id == deployment_id))


async def forget_environment(session: AsyncSession, environment_id: UUID, departed_at_revision: int | None = None
                             ) -> None:
    """Deletes everything the controller holds of the environment but its tombstone. With
    ``departed_at_revision`` (it left the region, and may come back), that last route revision
    is kept."""
    for model in (Workload, Instance, Job, Rollout, Release):  # the ones referring to releases first
        await session.execute(delete(model).where(model.environment_id == environment_id))
    if departed_at_revision is not None:
        stmt = pg_insert(DepartedEnvironment).values(environment_id=environment_id,
                                                     route_revision=departed_at_revision)
        await session.execute(stmt.on_conflict_do_update(
            index_elements=[DepartedEnvironment.environment_id],
            set_={"route_revision": func.greatest(DepartedEnvironment.route_revision, stmt.excluded.route_revision)}))


async def lock_unfinished_rollouts(session: AsyncSession, environment_id: UUID) -> list[Rollout]:
    return list(await session.scalars(
        select(Rollout)
        .where(Rollout.environment_id == environment_id, Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
        .order_by(Rollout.created_at, Rollout.deployment_id)
        .with_for_update()
    ))


async def due_rollouts(session: AsyncSession) -> list[Rollout]:
    """The oldest unfinished rollout of each environment: one at a time per environment, in order."""
    oldest = (
        select(Rollout.deployment_id)
        .where(Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
        .ext(distinct_on(Rollout.environment_id))
        .order_by(Rollout.environment_id, Rollout.created_at, Rollout.deployment_id)
    )
    return list(await session.scalars(select(Rollout).where(Rollout.deployment_id.in_(oldest))
                                      .order_by(Rollout.created_at)))


async def get_rollout(session: AsyncSession, deployment_id: UUID, lock: bool = False) -> Rollout | None:
    stmt = select(Rollout).where(Rollout.deployment_id == deployment_id)
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def get_release(session: AsyncSession, release_id: UUID) -> Release:
    return await session.get_one(Release, release_id)


async def lock_workload(session: AsyncSession, environment_id: UUID) -> Workload:
    return await session.scalar(select(Workload).where(Workload.environment_id == environment_id)
                                .with_for_update())


async def record_applied_revision(session: AsyncSession, environment_id: UUID, revision: int) -> None:
    await session.execute(
        update(Workload)
        .where(Workload.environment_id == environment_id, Workload.applied_route_revision < revision)
        .values(applied_route_revision=revision)
    )


async def hosts_served_elsewhere(session: AsyncSession, environment_id: UUID, hosts: list[str]) -> list[str]:
    """Which of ``hosts`` another environment of the region serves, redirects or forwards."""
    wanted = array(hosts, type_=String)
    rows = await session.execute(
        select(Workload.hosts, Workload.redirect_hosts, Workload.forward_hosts, Workload.traffic)
        .where(Workload.environment_id != environment_id,
               or_(Workload.hosts.has_any(wanted), Workload.redirect_hosts.has_any(wanted),
                   and_(Workload.traffic == Traffic.FORWARD, Workload.forward_hosts.has_any(wanted))))
    )
    taken: set[str] = set()
    for served, redirected, forwarded, traffic in rows:
        taken.update(served, redirected, forwarded if traffic == Traffic.FORWARD else [])
    return [host for host in hosts if host in taken]


async def traffic_due(session: AsyncSession) -> list[Workload]:
    """Workloads with a traffic change not yet reported in effect, and forwarded ones (which end)."""
    return list(await session.scalars(
        select(Workload).where(or_(Workload.traffic_reported.is_(False), Workload.traffic == Traffic.FORWARD))
        .order_by(Workload.environment_id)
    ))


async def applied_revision(session: AsyncSession, environment_id: UUID) -> int:
    return await session.scalar(select(Workload.applied_route_revision)
                                .where(Workload.environment_id == environment_id)) or 0


async def routed_workloads(session: AsyncSession) -> list[tuple[Workload, list[Instance]]]:
    """Workloads that serve a release, each with the healthy instances its routes point at."""
    workloads = list(await session.scalars(
        select(Workload).where(Workload.current_deployment_id.is_not(None)).order_by(Workload.environment_id)
    ))
    if not workloads:
        return []
    instances = await session.scalars(
        select(Instance)
        .where(Instance.deployment_id.in_([w.current_deployment_id for w in workloads]),
               Instance.state == InstanceState.HEALTHY, Instance.address.is_not(None))
        .order_by(Instance.created_at, Instance.id)
    )
    by_deployment: dict[UUID, list[Instance]] = {}
    for instance in instances:
        by_deployment.setdefault(instance.deployment_id, []).append(instance)
    return [(w, by_deployment.get(w.current_deployment_id, [])) for w in workloads]


# --- instances -----------------------------------------------------------------------


async def deployment_instances(session: AsyncSession, deployment_id: UUID,
                               states: Iterable[InstanceState] = ACTIVE_STATES) -> list[Instance]:
    return list(await session.scalars(
        select(Instance)
        .where(Instance.deployment_id == deployment_id, Instance.state.in_(tuple(states)))
        .order_by(Instance.created_at, Instance.id)
    ))


async def healthy_instances(session: AsyncSession, deployment_id: UUID | None) -> list[Instance]:
    if deployment_id is None:
        return []
    return await deployment_instances(session, deployment_id, (InstanceState.HEALTHY,))


async def other_instances(session: AsyncSession, environment_id: UUID, deployment_id: UUID,
                          states: Iterable[InstanceState]) -> list[Instance]:
    """The environment's instances that are not this deployment's: the ones it replaces."""
    return list(await session.scalars(
        select(Instance)
        .where(Instance.environment_id == environment_id, Instance.deployment_id != deployment_id,
               Instance.state.in_(tuple(states)))
        .order_by(Instance.created_at, Instance.id)
    ))


async def move_instances(session: AsyncSession, ids: Iterable[UUID], target: InstanceState,
                         address: str | None = None) -> list[Instance]:
    """Moves instances to ``target`` where the lifecycle allows it; returns the ones that moved."""
    ids = list(ids)
    if not ids:
        return []
    values: dict = {"state": target, "updated_at": func.now()}
    if address is not None:
        values["address"] = address
    moved = await session.scalars(
        update(Instance)
        .where(Instance.id.in_(ids), Instance.state.in_(sources_of(target) + (target,)))
        .values(**values)
        .returning(Instance)
    )
    return list(moved)


async def serving_at_other_addresses(session: AsyncSession, reported: dict[UUID, str]) -> list[Instance]:
    """Healthy instances whose runner reports them running at another address than the routes
    have: restarted in place, with a new published port."""
    if not reported:
        return []
    instances = await session.scalars(
        select(Instance).where(Instance.id.in_(list(reported)), Instance.state == InstanceState.HEALTHY))
    return [i for i in instances if i.address != reported[i.id]]


async def readdress(session: AsyncSession, instance_id: UUID, address: str) -> bool:
    """A healthy instance restarted at ``address`` is running again, not healthy: it serves
    nothing until it passes its health check there. False if it is no longer healthy at
    another address (moved on, or already readdressed)."""
    moved = await session.scalar(
        update(Instance)
        .where(Instance.id == instance_id, Instance.state == InstanceState.HEALTHY,
               Instance.address.is_distinct_from(address))
        .values(state=InstanceState.RUNNING, address=address, updated_at=func.now())
        .returning(Instance.id)
    )
    return moved is not None


async def observe_instances(session: AsyncSession, seen: dict[UUID, tuple[InstanceState, str | None]]) -> None:
    """What heartbeats report: only forward moves (pending → starting → running), so a late
    heartbeat changes nothing decided. One statement per target state, executed for many."""
    table = Instance.__table__
    connection = await session.connection()
    for target in (InstanceState.STARTING, InstanceState.RUNNING):
        # In id order: two writers locking rows in the same order cannot deadlock each other.
        params = [{"b_id": i, "b_address": address} for i, (state, address) in sorted(seen.items())
                  if state == target]
        if not params:
            continue
        sources = tuple(s for s in sources_of(target) if s in (InstanceState.PENDING, InstanceState.STARTING))
        await connection.execute(
            table.update()
            # or_, not in_: an IN list is an "expanding" parameter, which executemany refuses.
            .where(table.c.id == bindparam("b_id"), or_(*(table.c.state == s.value for s in sources)))
            .values(state=target, address=func.coalesce(bindparam("b_address", type_=String), table.c.address),
                    updated_at=func.now()),
            params,
        )


def instance_row(*, instance_id: UUID, environment_id: UUID, release_id: UUID, deployment_id: UUID,
                 runner: str) -> Instance:
    return Instance(id=instance_id, environment_id=environment_id, release_id=release_id,
                    deployment_id=deployment_id, runner=runner, state=InstanceState.PENDING)


# --- jobs ----------------------------------------------------------------------------


async def deployment_jobs(session: AsyncSession, deployment_id: UUID) -> dict[int, Job]:
    """The jobs of a rollout's release commands started so far, by the command's position."""
    jobs = await session.scalars(select(Job).where(Job.deployment_id == deployment_id))
    return {job.position: job for job in jobs}


def job_row(*, job_id: UUID, deployment_id: UUID, environment_id: UUID, release_id: UUID, position: int,
            label: str, command: str, runner: str, timeout_seconds: float) -> Job:
    return Job(id=job_id, deployment_id=deployment_id, environment_id=environment_id, release_id=release_id,
               position=position, label=label, command=command, runner=runner, timeout_seconds=timeout_seconds,
               state=JobState.RUNNING)


async def finish_job(session: AsyncSession, job_id: UUID, state: JobState, exit_code: int | None,
                     error: str | None) -> Job | None:
    """Records how a running job ended; None if its end was recorded before."""
    return await session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING)
        .values(state=state, exit_code=exit_code, error=error, finished_at=func.now())
        .returning(Job)
    )


# --- healing -------------------------------------------------------------------------


async def all_runners(session: AsyncSession) -> dict[str, Runner]:
    return {r.name: r for r in await session.scalars(select(Runner))}


async def set_runner_flags(session: AsyncSession, name: str, *, cordoned: bool, draining: bool) -> Runner | None:
    return await session.scalar(
        update(Runner).where(Runner.name == name).values(cordoned=cordoned, draining=draining).returning(Runner)
    )


async def workloads_to_heal(session: AsyncSession) -> list[UUID]:
    """Environments the healer has work in: serving a release at a known count, with no
    rollout under way (a running rollout places and retires instances itself), and not
    settled: fewer or more healthy instances in service than wanted, instances on their way
    or draining, instances on lost or draining runners, or leftovers of an older release.
    One query for the whole region, so a pass over thousands of settled environments is cheap."""
    rolling = select(Rollout.environment_id).where(Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
    in_service = and_(Runner.state == RunnerState.READY, Runner.draining.is_(False))
    current = Instance.deployment_id == Workload.current_deployment_id
    rows = await session.execute(
        select(Workload.environment_id)
        .outerjoin(Instance, and_(Instance.environment_id == Workload.environment_id,
                                  Instance.state.in_(ACTIVE_STATES)))
        .outerjoin(Runner, Runner.name == Instance.runner)
        .where(Workload.current_deployment_id.is_not(None), Workload.instances.is_not(None),
               Workload.environment_id.not_in(rolling),
               # Forwarded to another region: its instances here were stopped for good.
               Workload.traffic != Traffic.FORWARD)
        .group_by(Workload.environment_id, Workload.instances)
        .having(
            (func.count(Instance.id).filter(current, Instance.state == InstanceState.HEALTHY, in_service)
             != Workload.instances)
            | (func.count(Instance.id).filter(Instance.state != InstanceState.HEALTHY) > 0)
            | (func.count(Instance.id).filter(~in_service) > 0)
            | (func.count(Instance.id).filter(~current) > 0)
        )
        .order_by(Workload.environment_id)
    )
    return list(rows.scalars())


async def has_unfinished_rollout(session: AsyncSession, environment_id: UUID) -> bool:
    return await session.scalar(
        select(func.count()).select_from(Rollout)
        .where(Rollout.environment_id == environment_id, Rollout.state.in_(UNFINISHED_ROLLOUT_STATES))
    ) > 0


async def environment_instances(session: AsyncSession, environment_id: UUID,
                                states: Iterable[InstanceState] = ACTIVE_STATES) -> list[Instance]:
    return list(await session.scalars(
        select(Instance)
        .where(Instance.environment_id == environment_id, Instance.state.in_(tuple(states)))
        .order_by(Instance.created_at, Instance.id)
    ))
