"""A build's lifecycle, in one place: which transitions exist."""
from enum import StrEnum


class BuildState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BuildMode(StrEnum):
    AUTO = "AUTO"  # reuse an image already built from the same commit
    FORCE = "FORCE"  # always run docker build


TRANSITIONS: dict[BuildState, frozenset[BuildState]] = {
    # Straight to failed when its deployment is cancelled before the build starts.
    BuildState.QUEUED: frozenset({BuildState.RUNNING, BuildState.FAILED}),
    # Back to queued only when a builder died mid-build: the build runs again from the start.
    BuildState.RUNNING: frozenset({BuildState.SUCCEEDED, BuildState.FAILED, BuildState.QUEUED}),
    BuildState.SUCCEEDED: frozenset(),
    BuildState.FAILED: frozenset(),
}


def can_transition(current: BuildState, new: BuildState) -> bool:
    return new in TRANSITIONS[current]


def sources_of(new: BuildState) -> list[BuildState]:
    """The states a build may be in for it to move to ``new``: the guard of an UPDATE."""
    return [state for state, targets in TRANSITIONS.items() if new in targets]
