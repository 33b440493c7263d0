"""Which instances each environment's SRV name answers with, and since when."""
import time
from collections.abc import Iterable
from uuid import UUID

from ..routes import Route
from .names import target_name, upstreams_name

Service = tuple[str, int]  # an SRV target and port


def _services(route: Route) -> tuple[Service, ...]:
    return tuple((target_name(host), int(port)) for host, _, port in (u.address.rpartition(":") for u in route.upstreams))


class UpstreamTable:
    """The answers the responder gives. Replaced whole from the route table, read per query."""

    def __init__(self, refresh: float, grace: float, clock=time.monotonic):
        self.refresh = refresh
        self.grace = grace
        self._clock = clock
        self._answers: dict[str, tuple[Service, ...]] = {}
        self._settles: dict[str, float] = {}  # see settled_at
        self._emptied_at: dict[str, float] = {}  # when a name last lost its services
        self._started_at = clock()

    def lookup(self, name: str) -> tuple[Service, ...] | None:
        """The services of ``name``; None for a name no environment has."""
        return self._answers.get(name)

    def replace(self, routes: Iterable[Route]) -> None:
        now = self._clock()
        answers = {upstreams_name(route.environment_id): _services(route) for route in routes}
        for name in self._answers.keys() | answers.keys():
            before, after = self._answers.get(name), answers.get(name)
            if before == after:
                continue
            if before and not after:
                self._emptied_at[name] = now
            # Caddy caches an answer for `refresh` from when it got it: every request starting
            # `refresh` after a change gets the new answer. But to Caddy an empty answer (or none)
            # is a failed lookup, after which it keeps the services it had for the whole grace
            # period; a name emptied less than that ago may still be pinned to its old services.
            # (While a name is empty its hosts answer 503 from the config and are not looked up.)
            emptied_at = self._emptied_at.get(name, -self.grace)
            self._settles[name] = max(now + self.refresh, emptied_at + self.grace) if after else now
        self._answers = answers
        self._settles = {name: at for name, at in self._settles.items() if name in answers}
        self._emptied_at = {name: at for name, at in self._emptied_at.items() if at + self.grace > now}

    def settled_at(self, environment_id: UUID) -> float:
        """When Caddy can no longer be using an older answer than the current one for this environment.

        Before this responder started, Caddy's lookups failed and each kept its cached services
        for the grace period: until start + grace, any name may still be pinned to old ones."""
        name = upstreams_name(environment_id)
        return max(self._settles.get(name, 0.0), self._started_at + self.grace)

    def now(self) -> float:
        return self._clock()
