"""How far an environment may be scaled: its application's plan group sets the most
instances and the most memory per instance; the memory sizes are Divio's table."""
from dataclasses import dataclass

from regio_common.plans import MEMORY_SIZES_MB

from .errors import ApiError


@dataclass(frozen=True)
class Limits:
    plan_group: str | None  # None: the application has no plan group
    max_instances: int
    memory_mb: int

    def where(self) -> str:
        return f"on plan group '{self.plan_group}'" if self.plan_group else "without a plan group"


# An application without a plan group gets what every environment starts with: one
# instance of 512 MB. More takes a plan group, so nobody scales past what they pay for.
WITHOUT_PLAN_GROUP = Limits(plan_group=None, max_instances=1, memory_mb=512)


def check(limits: Limits, *, instances: int | None = None, memory_mb: int | None = None) -> None:
    """Raises a 400 naming the field and the limit it passes."""
    if instances is not None and instances > limits.max_instances:
        noun = "instance" if limits.max_instances == 1 else "instances"
        raise ApiError(f"at most {limits.max_instances} {noun} {limits.where()}", "instances")
    if memory_mb is not None:
        if memory_mb not in MEMORY_SIZES_MB:
            raise ApiError(f"Choose one of {', '.join(str(s) for s in MEMORY_SIZES_MB)} (MB).", "memory_mb")
        if memory_mb > limits.memory_mb:
            raise ApiError(f"at most {limits.memory_mb} MB per instance {limits.where()}", "memory_mb")
