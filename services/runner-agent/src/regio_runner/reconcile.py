"""Planning a reconcile pass: from the desired instances and the observed containers,
the actions that bring this runner's host to the desired state.

Pure: no engine, no clock, no I/O. The agent executes the actions; the next pass
plans again from what it then observes, so a failed action is simply planned again."""
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from regio_common.runners import ContainerState, DesiredInstance

from .docker_engine import Container, container_name

# An exited instance is restarted at most this often, and so is a failing first start.
RESTART_BACKOFF_SECONDS = 2.0


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


Action = Run | Start | Remove


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
    now: float = 0.0,
    backoff: float = RESTART_BACKOFF_SECONDS,
) -> list[Action]:
    """At most one action per instance (or stray container) per pass.

    ``desired`` is None when the controller has never written this runner's desired
    state: then nothing is known to be unwanted and nothing is touched.
    ``busy`` holds the keys with an action still running; ``last_started`` when each
    key was last started, for the restart backoff."""
    if desired is None:
        return []
    busy = set(busy)
    last_started = last_started or {}
    wanted = {str(d.instance_id): d for d in desired}
    actions: list[Action] = []
    planned: set[str] = set()
    kept: dict[str, Container] = {}

    def may_start(key: str) -> bool:
        started = last_started.get(key)
        return started is None or now - started >= backoff

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
            if may_start(key):
                actions.append(Start(instance, container.container_id, restart=True))
        elif container.state == ContainerState.STARTING:
            # Created but never started, e.g. the agent stopped between create and start.
            if may_start(key):
                actions.append(Start(instance, container.container_id, restart=False))
    return actions
