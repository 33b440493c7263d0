"""Lifecycles of instances, rollouts and jobs, and the one table of allowed instance moves."""
from enum import StrEnum


class InstanceState(StrEnum):
    PENDING = "pending"  # placed on a runner and in its desired state, not yet seen
    STARTING = "starting"  # the runner reports the container created
    RUNNING = "running"  # the runner reports it running at an address
    HEALTHY = "healthy"  # passed the sanity test; may carry traffic
    DRAINING = "draining"  # routes moved off it; stopped once nothing is in flight to it, or at the drain grace
    STOPPED = "stopped"  # removed from the runner's desired state
    FAILED = "failed"  # its rollout failed, or it never passed its health check; removed from its runner
    LOST = "lost"  # its runner stopped heartbeating: replaced elsewhere, and removed if the runner comes back


# On a runner's desired list, and holding memory there.
ACTIVE_STATES = (
    InstanceState.PENDING,
    InstanceState.STARTING,
    InstanceState.RUNNING,
    InstanceState.HEALTHY,
    InstanceState.DRAINING,
)

# Instance lifecycle: only these moves exist. Heartbeats move instances forward
# (pending → starting → running); rollouts and the healer decide the rest. Nothing leaves
# stopped, failed or lost, so a late heartbeat cannot resurrect an instance.
# One move back is kept out of this table, so that no guarded move can make it by mistake:
# healthy → running, of an instance its runner restarted at a new address. It is made only
# where that address is compared (repository.readdress), and the instance is checked again
# before it serves.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.PENDING: frozenset({InstanceState.STARTING, InstanceState.RUNNING, InstanceState.FAILED,
                                      InstanceState.STOPPED, InstanceState.LOST}),
    InstanceState.STARTING: frozenset({InstanceState.RUNNING, InstanceState.FAILED, InstanceState.STOPPED,
                                       InstanceState.LOST}),
    InstanceState.RUNNING: frozenset({InstanceState.HEALTHY, InstanceState.FAILED, InstanceState.DRAINING,
                                      InstanceState.STOPPED, InstanceState.LOST}),
    # failed: its rollout failed after routing to it, and the routes moved back.
    InstanceState.HEALTHY: frozenset({InstanceState.DRAINING, InstanceState.STOPPED, InstanceState.FAILED,
                                      InstanceState.LOST}),
    InstanceState.DRAINING: frozenset({InstanceState.STOPPED, InstanceState.LOST}),
    InstanceState.STOPPED: frozenset(),
    InstanceState.FAILED: frozenset(),
    InstanceState.LOST: frozenset(),
}


def can_move(current: InstanceState, target: InstanceState) -> bool:
    return target == current or target in TRANSITIONS[current]


def sources_of(target: InstanceState) -> tuple[InstanceState, ...]:
    """States from which an instance may move to ``target`` (for guarded UPDATEs)."""
    return tuple(s for s, targets in TRANSITIONS.items() if target in targets)


class RolloutState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNFINISHED_ROLLOUT_STATES = (RolloutState.PENDING, RolloutState.RUNNING)


class JobState(StrEnum):
    """A release command's job; only a running one is in its runner's desired state."""

    RUNNING = "running"  # in its runner's desired state, its outcome not yet recorded
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a non-zero exit, or it could not run, or its runner was lost
    TIMED_OUT = "timed out"  # killed by its runner for running past its timeout


class RunnerState(StrEnum):
    READY = "ready"
    LOST = "lost"  # heartbeat older than runner_lost_seconds: no new placements
