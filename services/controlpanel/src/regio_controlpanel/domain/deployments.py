"""The deployment lifecycle: Divio's eight steps, in order, each with its progress.

This is the one place that says which status follows which; handlers ask it
instead of writing statuses themselves."""
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    BUILD = "build"
    RELEASE = "release"
    RELEASE_COMMANDS = "release commands"
    SCALING = "scaling"
    SANITY_TESTS = "sanity tests"
    FINALIZING = "finalizing"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


# Pipeline order and the percent a deployment shows when a step starts.
STEPS: tuple[tuple[Status, int], ...] = (
    (Status.QUEUED, 0),
    (Status.PROVISIONING, 5),
    (Status.BUILD, 10),
    (Status.RELEASE, 50),
    (Status.RELEASE_COMMANDS, 55),
    (Status.SCALING, 60),
    (Status.SANITY_TESTS, 75),
    (Status.FINALIZING, 90),
    (Status.SUCCESS, 100),
)
_ORDER = {status: i for i, (status, _) in enumerate(STEPS)}
PERCENT = dict(STEPS)
FINAL = {Status.SUCCESS, Status.FAILURE, Status.CANCELLED}
# Not yet handed to the controller's rollout: a newer deployment may supersede these.
WAITING = {Status.QUEUED, Status.PROVISIONING, Status.BUILD, Status.RELEASE}


class TransitionRefused(Exception):
    pass


@dataclass(frozen=True)
class Progress:
    status: Status
    percent: int


def advance(current: str, to: Status, percent: int | None = None) -> Progress:
    """The next progress of a deployment moving to ``to``.

    Steps only move forward and percent never shrinks, so late or redelivered
    events cannot make a deployment look as if it went backwards."""
    current = Status(current)
    if current in FINAL:
        raise TransitionRefused(f"deployment already ended ({current})")
    if to in (Status.FAILURE, Status.CANCELLED):
        return Progress(to, PERCENT.get(current, 0))
    if _ORDER[to] < _ORDER[current]:
        raise TransitionRefused(f"{current} cannot go back to {to}")
    return Progress(to, max(PERCENT[to] if percent is None else percent, PERCENT[current]))


def step_timings(steps: list[dict], ended_at) -> list[tuple[str, object, object]]:
    """(step, started_at, ended_at) from the recorded step starts: each step ends when the
    next starts, the last when the deployment ended (None while it runs)."""
    ends = [s["at"] for s in steps[1:]] + [ended_at]
    return [(s["step"], s["at"], end) for s, end in zip(steps, ends)]


def step_of(name: str) -> Status:
    """Map a step name from another service (e.g. the controller's 'sanity tests')."""
    return Status(name)
