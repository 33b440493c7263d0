"""How far an environment may be scaled on a plan: how many instances it may run (more than
one only in the plan's scalable environments), which memory sizes, and the size a new
environment starts at. Pure rules over a plan's limits (db/billing.py: Plan); the checks
that refuse a request are services/plan_limits.py."""
from dataclasses import dataclass
from typing import Protocol

# The size every environment started at before plans had sizes: a new one starts there
# when its plan allows it.
PREFERRED_MEMORY_MB = 512


class PlanLimits(Protocol):
    name: str
    memory_sizes_mb: list
    max_instances: int
    scalable_environments: list | None


def most_instances(plan: PlanLimits, environment_slug: str) -> int:
    """The most instances the environment may run on the plan."""
    if plan.scalable_environments is not None and environment_slug not in plan.scalable_environments:
        return min(1, plan.max_instances)
    return plan.max_instances


def default_memory_mb(plan: PlanLimits) -> int:
    """512 MB if the plan allows it, else its largest size below 512, else its smallest."""
    sizes = sorted(plan.memory_sizes_mb)
    if PREFERRED_MEMORY_MB in sizes:
        return PREFERRED_MEMORY_MB
    below = [s for s in sizes if s < PREFERRED_MEMORY_MB]
    return below[-1] if below else sizes[0]


def fitting_memory_mb(plan: PlanLimits, memory_mb: int) -> int:
    """``memory_mb`` if the plan allows it, else the largest allowed size below it, else the
    smallest allowed: a downgrade never gives an environment more memory than it had."""
    sizes = sorted(plan.memory_sizes_mb)
    if memory_mb in sizes:
        return memory_mb
    below = [s for s in sizes if s < memory_mb]
    return below[-1] if below else sizes[0]


@dataclass(frozen=True)
class Size:
    instances: int
    memory_mb: int


def clamped(plan: PlanLimits, environment_slug: str, size: Size) -> Size:
    """The size the environment runs at on the plan: its own where the plan allows it."""
    return Size(instances=max(1, min(size.instances, most_instances(plan, environment_slug))),
                memory_mb=fitting_memory_mb(plan, size.memory_mb))


def instances_word(n: int) -> str:
    return f"{n} instance{'' if n == 1 else 's'}"
