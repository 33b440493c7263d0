"""Placing an environment's new instances in the database: the runners that may take them,
what they have free, and one PENDING instance row per placement. Used by rollouts (scaling
step) and by the healer (scale changes, replacements), in the caller's transaction."""
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from ..db import repository
from ..db.models import Instance, Release
from ..domain.errors import RolloutFailed
from .placement import NoCapacity, RunnerCapacity, may_run, place


class Unplaceable(RolloutFailed):
    """Nothing fits: the reason names the region, the size and how many were placed."""


async def assign(session: AsyncSession, *, region: str, environment_id: UUID,
                 deployment_id: UUID, release: Release, count: int, dedicated_to: UUID | None) -> list[Instance]:
    """``count`` new instances of ``release`` for ``deployment_id``, all placed or none (raises
    Unplaceable). The runners are locked until the transaction ends, so two placements never
    spend the same free memory."""
    runners = [r for r in await repository.lock_ready_runners(session)
               if may_run(r.labels, region, dedicated_to)]
    where = f"region {region}" + (f" (dedicated to organisation {dedicated_to})" if dedicated_to else "")
    if not runners:
        raise Unplaceable(f"no runner of {where} is ready to take instances")
    usage = await repository.memory_in_use(session, environment_id)
    capacities = [RunnerCapacity(r.name, r.memory_mb, *usage.get(r.name, (0, 0, 0))) for r in runners]
    try:
        chosen = place(capacities, count, release.memory_mb, env_bytes=len(release.sealed_env))
    except NoCapacity as e:
        if e.env_bytes is not None:
            raise Unplaceable(f"no runner of {where} has room for this release's environment ({e.env_bytes} "
                              f"bytes sealed) among those it runs already ({e.placed} of {e.wanted} "
                              f"instance(s) fit); a smaller environment fits more easily") from None
        raise Unplaceable(f"no runner of {where} has {release.memory_mb} MB free "
                          f"({e.placed} of {e.wanted} instance(s) fit)") from None
    instances = [repository.instance_row(instance_id=uuid4(), environment_id=environment_id, release_id=release.id,
                                         deployment_id=deployment_id, runner=runner) for runner in chosen]
    session.add_all(instances)
    await session.flush()
    return instances
