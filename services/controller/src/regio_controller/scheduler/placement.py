"""Placement of new instances on a region's runners.

Which runners may take an environment's instances: those labelled with the controller's
region and, for a region dedicated to one organisation, only that organisation's runners
(and a public region's environments never go on a dedicated runner).

Memory is the resource placed against: a runner's free memory is its capacity
minus the memory of every instance it is asked to run. One environment's
instances spread across runners first (losing a runner should not take an
environment down), then go where most memory is free.

A runner's desired state is one key-value entry carrying every sealed environment of what
it runs, and the bus refuses an entry over its message limit: a runner whose entry could not
be written would run nothing new for anyone. So each runner also has a budget of sealed
environment bytes, and an instance whose environment does not fit there goes elsewhere."""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from regio_common.messages import MAX_PAYLOAD_BYTES

REGION_LABEL = "region"
ORGANISATION_LABEL = "organisation"  # on the runners of a region dedicated to one organisation
# Sealed environments in one runner's desired state; the rest of the entry (ids, images,
# sizes: about 300 bytes an instance) fits in the last quarter of the message limit.
MAX_DESIRED_ENV_BYTES = MAX_PAYLOAD_BYTES * 3 // 4


def may_run(labels: Mapping[str, str], region: str, dedicated_to: UUID | None) -> bool:
    """May a runner with ``labels`` run instances of an environment of ``region`` that is
    dedicated to ``dedicated_to`` (None: a public region)? A runner without a region label
    is taken to be of the controller's region (the one whose buckets it heartbeats in)."""
    if labels.get(REGION_LABEL, region) != region:
        return False
    owner = labels.get(ORGANISATION_LABEL) or None
    return owner == (str(dedicated_to) if dedicated_to else None)


@dataclass(frozen=True)
class RunnerCapacity:
    name: str
    memory_mb: int  # what the runner offers
    used_memory_mb: int  # held by its non-stopped instances
    environment_instances: int = 0  # of the environment being placed
    env_bytes: int = 0  # sealed environments in its desired state (instances and running jobs)

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb


class NoCapacity(Exception):
    """No runner can take one more instance of this size. ``env_bytes`` is set when some had
    the memory but not the room for the release's environment in their desired state."""

    def __init__(self, memory_mb: int, placed: int, wanted: int, env_bytes: int | None = None):
        lacking = f"room for a {env_bytes}-byte environment" if env_bytes is not None else f"{memory_mb} MB free"
        super().__init__(f"no runner has {lacking} ({placed} of {wanted} instances placed)")
        self.memory_mb = memory_mb
        self.placed = placed
        self.wanted = wanted
        self.env_bytes = env_bytes


def place(runners: Sequence[RunnerCapacity], count: int, memory_mb: int, env_bytes: int = 0,
          max_env_bytes: int = MAX_DESIRED_ENV_BYTES) -> list[str]:
    """Names of the runners for ``count`` new instances of ``memory_mb`` each, one per instance,
    each carrying a sealed environment of ``env_bytes``.

    All or nothing: raises NoCapacity when any one of them does not fit, so a
    rollout that cannot be scaled changes nothing."""
    free = {r.name: r.free_memory_mb for r in runners}
    room = {r.name: max_env_bytes - r.env_bytes for r in runners}
    spread = {r.name: r.environment_instances for r in runners}
    chosen: list[str] = []
    for _ in range(count):
        with_memory = [name for name in free if free[name] >= memory_mb]
        fitting = [name for name in with_memory if room[name] >= env_bytes]
        if not fitting:
            raise NoCapacity(memory_mb, len(chosen), count, env_bytes if with_memory else None)
        # Name last: equal runners are chosen the same way every time.
        name = min(fitting, key=lambda n: (spread[n], -free[n], n))
        chosen.append(name)
        free[name] -= memory_mb
        room[name] -= env_bytes
        spread[name] += 1
    return chosen
