"""What to do to one environment's instances of its current release: pure, so every rule
is tested without a database.

The rules, in the order they protect the site:
- an instance that serves keeps serving until enough healthy instances stand beside it,
  even on a lost or draining runner (a lost runner may only have lost its agent);
- missing instances are added at once, counting those already on their way;
- only once the environment has its count of healthy instances elsewhere do the extra
  ones leave: first those of leaving runners, then the newest on the most crowded runner."""
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from ..domain.states import InstanceState

COMING = (InstanceState.PENDING, InstanceState.STARTING, InstanceState.RUNNING)


@dataclass(frozen=True)
class Seen:
    """One instance of the environment's current deployment, as the healer sees it."""

    id: UUID
    runner: str
    state: InstanceState
    leaving: bool = False  # its runner is lost or draining: it is to be replaced


@dataclass
class Convergence:
    add: int = 0  # new instances to place
    drain: list[UUID] = field(default_factory=list)  # serving ones: off the routes, drained, stopped
    stop: list[UUID] = field(default_factory=list)  # not serving yet: stopped at once

    @property
    def idle(self) -> bool:
        return not (self.add or self.drain or self.stop)


def converge(wanted: int, instances: Sequence[Seen]) -> Convergence:
    """``instances`` in the order they were created (oldest first)."""
    serving = [i for i in instances if i.state == InstanceState.HEALTHY and not i.leaving]
    leaving = [i for i in instances if i.state == InstanceState.HEALTHY and i.leaving]
    coming = [i for i in instances if i.state in COMING and not i.leaving]
    result = Convergence()
    # On their way to a runner that is going away: never to serve.
    result.stop += [i.id for i in instances if i.state in COMING and i.leaving]
    if len(serving) >= wanted:
        result.drain += [i.id for i in leaving]
        result.drain += [i.id for i in _extras(serving, len(serving) - wanted)]
        result.stop += [i.id for i in coming]
        return result
    missing = wanted - len(serving)
    # The furthest along are kept: running before starting before pending.
    coming.sort(key=lambda i: COMING.index(i.state), reverse=True)
    result.stop += [i.id for i in coming[missing:]]
    result.add = max(0, missing - len(coming))
    return result


def _extras(serving: Sequence[Seen], count: int) -> list[Seen]:
    """The ``count`` instances to take away: each time the newest on the runner with the most."""
    left = list(serving)
    chosen = []
    for _ in range(count):
        crowd = Counter(i.runner for i in left)
        victim = max(reversed(left), key=lambda i: crowd[i.runner])  # newest among the most crowded
        left.remove(victim)
        chosen.append(victim)
    return chosen
