"""What the region's runners offer, for the controller's heartbeat (region_status): the
control panel shows it beside the region and tells from it whether the region can run anything.

Summed from what the controller holds already: each runner's last heartbeat (the registry),
the memory of what each was last told to run (DesiredState, rewritten for every runner at start
and every half minute), and which runners an operator took out of placement. No query over
the instances: a region with thousands of them sends this every few seconds."""
from collections.abc import Collection, Mapping
from datetime import datetime

from .registry import RunnerRegistry


def capacity(registry: RunnerRegistry, held_mb: Mapping[str, int], unschedulable: Collection[str],
             now: datetime | None = None) -> dict[str, int]:
    """``runners``: known by their heartbeats; ``runners_ready``: heard within the time after
    which one is lost; ``memory_mb``: offered by the ready runners that take new instances
    (neither cordoned nor draining), ``memory_mb_free``: of that, what they are not told to hold."""
    offered = registry.offered_memory()
    ready = [name for name in offered if not registry.is_lost(name, now)]
    placing = [name for name in ready if name not in unschedulable]
    return {
        "runners": len(offered),
        "runners_ready": len(ready),
        "memory_mb": sum(offered[name] for name in placing),
        "memory_mb_free": sum(max(0, offered[name] - held_mb.get(name, 0)) for name in placing),
    }
