"""Placement of new instances on a region's runners.

Which runners may take an environment's instances: those labelled with the controller's
region and, for a region dedicated to one organisation, only that organisation's runners
(and a public region's environments never go on a dedicated runner).

Memory is the resource placed against: a runner's free memory is its capacity
minus the memory of every instance it is asked to run. One environment's
instances spread across runners first (losing a runner should not take an
environment down), then go where most memory is free."""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

REGION_LABEL = "region"
ORGANISATION_LABEL = "organisation"  # on the runners of a region dedicated to one organisation


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

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb


class NoCapacity(Exception):
    """No runner can take one more instance of this size."""

    def __init__(self, memory_mb: int, placed: int, wanted: int):
        super().__init__(f"no runner has {memory_mb} MB free ({placed} of {wanted} instances placed)")
        self.memory_mb = memory_mb
        self.placed = placed
        self.wanted = wanted


def place(runners: Sequence[RunnerCapacity], count: int, memory_mb: int) -> list[str]:
    """Names of the runners for ``count`` new instances of ``memory_mb`` each, one per instance.

    All or nothing: raises NoCapacity when any one of them does not fit, so a
    rollout that cannot be scaled changes nothing."""
    free = {r.name: r.free_memory_mb for r in runners}
    spread = {r.name: r.environment_instances for r in runners}
    chosen: list[str] = []
    for _ in range(count):
        fitting = [name for name in free if free[name] >= memory_mb]
        if not fitting:
            raise NoCapacity(memory_mb, len(chosen), count)
        # Name last: equal runners are chosen the same way every time.
        name = min(fitting, key=lambda n: (spread[n], -free[n], n))
        chosen.append(name)
        free[name] -= memory_mb
        spread[name] += 1
    return chosen
