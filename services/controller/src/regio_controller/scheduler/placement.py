"""Placement of a rollout's new instances on a region's runners.

Memory is the resource placed against: a runner's free memory is its capacity
minus the memory of every instance it is asked to run. One environment's
instances spread across runners first (losing a runner should not take an
environment down), then go where most memory is free."""
from collections.abc import Sequence
from dataclasses import dataclass


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
