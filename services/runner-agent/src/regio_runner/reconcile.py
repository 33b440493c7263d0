"""Planning a reconcile pass: from the desired instances and the observed containers,
the actions that bring this runner's host to the desired state.

Pure: no engine, no clock, no I/O. The agent executes the actions; the next pass
plans again from what it then observes, so a failed action is simply planned again.

An instance that exits is restarted after a delay that doubles with each exit in a row,
1 s, 2 s, 4 s … up to 30 s, and is back to 1 s once a run lasted 30 s: Kubernetes'
CrashLoopBackOff, quicker, since an instance that crashed once should be back at once, and
one that crashes at every start should not keep its runner busy."""
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from regio_common.runners import ContainerState, DesiredInstance

from .docker_engine import Container, container_name

FIRST_RESTART_DELAY = 1.0  # seconds, after an instance's first exit (in a while)
MAX_RESTART_DELAY = 30.0
# A run at least this long ends the crash loop: the next exit is restarted after the first delay again.
RESET_AFTER_SECONDS = 30.0
# A first start that fails (the image cannot be run, the engine refused) is tried again this often.
START_RETRY_SECONDS = 2.0


def restart_delay(streak: int) -> float:
    """The delay before the restart that follows ``streak`` restarts in a row."""
    return min(FIRST_RESTART_DELAY * 2 ** min(streak, 32), MAX_RESTART_DELAY)


@dataclass(frozen=True)
class Pacing:
    """Where an instance stands in its crash loop, as the agent keeps it between passes."""

    streak: int = 0  # restarts in a row, none of which was followed by a run of RESET_AFTER_SECONDS
    run: datetime | None = None  # the exited run (its started_at) the next restart is for
    due: float | None = None  # when that restart is due (the planner's clock), once scheduled

    def restarted(self) -> "Pacing":
        """The restart was dispatched: it counts in the streak, and the run's exit is dealt with."""
        return Pacing(self.streak + 1, self.run, None)


def ran_for(container: Container) -> float:
    """How long the container's last run lasted; 0 when the engine does not say."""
    if container.started_at is None or container.finished_at is None:
        return 0.0
    return max((container.finished_at - container.started_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class Run:
    """No container for a desired instance: create and start one."""

    instance: DesiredInstance

    @property
    def key(self) -> str:
        return str(self.instance.instance_id)


@dataclass(frozen=True)
class Start:
    """The desired instance's container exists but is not running: start it again."""

    instance: DesiredInstance
    container_id: str
    restart: bool  # it ran and exited (counted), rather than was created and never started

    @property
    def key(self) -> str:
        return str(self.instance.instance_id)


@dataclass(frozen=True)
class Remove:
    """A container this runner has but should not: stop it gracefully and remove it."""

    container_id: str
    key: str
    instance_id: UUID | None


@dataclass(frozen=True)
class Backoff:
    """The desired instance's container exited: restart it after ``delay`` seconds (the
    agent then plans a Start once ``pacing.due`` has come)."""

    instance: DesiredInstance
    container: Container  # as it exited
    delay: float
    pacing: Pacing  # what the agent keeps for the instance from now on

    @property
    def key(self) -> str:
        return str(self.instance.instance_id)


Action = Run | Start | Remove | Backoff


def matches(container: Container, instance: DesiredInstance) -> bool:
    """Is this container the desired instance? Releases are immutable, so the same
    instance with another release or image means a replacement."""
    return (
        container.name == container_name(instance.instance_id)
        and container.release_id == instance.release_id
        and container.image == instance.image
    )


def plan(
    desired: Iterable[DesiredInstance] | None,
    observed: Iterable[Container],
    *,
    busy: Iterable[str] = (),
    last_started: Mapping[str, float] | None = None,
    pacing: Mapping[str, Pacing] | None = None,
    now: float = 0.0,
) -> list[Action]:
    """At most one action per instance (or stray container) per pass.

    ``desired`` is None when the controller has never written this runner's desired
    state: then nothing is known to be unwanted and nothing is touched.
    ``busy`` holds the keys with an action still running; ``last_started`` when each
    key was last started (to pace failing first starts); ``pacing`` each instance's crash
    loop (to pace restarts); ``now`` is on the same clock as both."""
    if desired is None:
        return []
    busy = set(busy)
    last_started = last_started or {}
    pacing = pacing or {}
    wanted = {str(d.instance_id): d for d in desired}
    actions: list[Action] = []
    planned: set[str] = set()
    kept: dict[str, Container] = {}

    def may_start(key: str) -> bool:
        started = last_started.get(key)
        return started is None or now - started >= START_RETRY_SECONDS

    for container in observed:
        key = container.key
        instance = wanted.get(key)
        if instance is not None and key not in kept and matches(container, instance):
            kept[key] = container
            continue
        if key in busy or key in planned:
            continue
        actions.append(Remove(container.container_id, key, container.instance_id))
        planned.add(key)

    for key, instance in wanted.items():
        if key in busy or key in planned:
            continue
        container = kept.get(key)
        if container is None:
            if may_start(key):
                actions.append(Run(instance))
        elif container.state == ContainerState.EXITED:
            actions.extend(_restart(instance, container, pacing.get(key, Pacing()), now))
        elif container.state == ContainerState.STARTING:
            # Created but never started, e.g. the agent stopped between create and start.
            if may_start(key):
                actions.append(Start(instance, container.container_id, restart=False))
    return actions


def _restart(instance: DesiredInstance, container: Container, pacing: Pacing, now: float) -> list[Action]:
    """An exited instance: schedule its restart once per exit, then restart it when due."""
    if pacing.run == container.started_at and pacing.due is not None:
        return [Start(instance, container.container_id, restart=True)] if now >= pacing.due else []
    # A new exit, or a restart of this run that failed (the container is still exited).
    streak = pacing.streak
    if pacing.run != container.started_at and ran_for(container) >= RESET_AFTER_SECONDS:
        streak = 0
    delay = restart_delay(streak)
    return [Backoff(instance, container, delay, Pacing(streak, container.started_at, now + delay))]
