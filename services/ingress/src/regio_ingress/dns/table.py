"""What each host's SRV name answers, and since when: the route table, as Caddy sees it."""
import time
from collections.abc import Iterable
from uuid import UUID

from ..routes import Route
from ..routes.destination import PublicPorts, destination
from ..routes.host_index import HostIndex
from .names import request_of_name, target_name

Service = tuple[str, int]  # an SRV target and port


def _service(address: str, resolved: dict[str, str] | None = None) -> Service:
    """``resolved``: the addresses of upstream host names (dns/upstream_names.py)."""
    host, _, port = address.rpartition(":")
    return target_name((resolved or {}).get(host, host)), int(port)


class UpstreamTable:
    """The answers the responder gives. Replaced whole from the route table, read per query.

    A host served by instances answers with them; any other host (unknown, redirected, without
    instances) answers with the ingress's edge, which gives the answer itself. So no name in the
    zone is ever empty: to Caddy an empty answer is a failed lookup, after which it would keep a
    host's old instances for the whole grace period. A held route answers with the hold address
    (dns/hold.py), where Caddy's dials are refused and retried until the route is released.
    Without one (a table in a test) a held route answers with the edge."""

    def __init__(self, refresh: float, grace: float, edge: str, ports: PublicPorts, clock=time.monotonic,
                 hold: str | None = None):
        self.refresh = refresh
        self.grace = grace
        self.edge = (_service(edge),)
        self.hold = (_service(hold),) if hold else self.edge
        self.ports = ports
        self.hosts = HostIndex()
        self.loaded = False  # replaced from the route table at least once
        self._clock = clock
        self._routes: dict[UUID, Route] = {}
        self._instances: dict[UUID, tuple[Service, ...]] = {}
        self._settles: dict[UUID, float] = {}  # see settled_at
        self._started_at = clock()

    def lookup(self, name: str) -> tuple[Service, ...] | None:
        """The services of ``name``; None for a name outside the hosts zone."""
        request = request_of_name(name)
        if request is None:
            return None
        to = destination(self.hosts, *request, self.ports)
        return self._instances[to.environment_id] if isinstance(to, Route) else self.edge

    def replace(self, routes: Iterable[Route], resolved: dict[str, str] | None = None) -> None:
        now = self._clock()
        routes = {route.environment_id: route for route in routes}
        for environment_id in self._routes.keys() | routes.keys():
            if _answered(self._routes.get(environment_id)) != _answered(routes.get(environment_id)):
                # Caddy caches an answer for `refresh` from when it got it: every request starting
                # `refresh` after a change gets the new answer, for each of the route's hosts.
                self._settles[environment_id] = now + self.refresh
        self._routes = routes
        self._instances = {e: self.hold if r.held else tuple(_service(u.address, resolved) for u in r.upstreams)
                           for e, r in routes.items()}
        self.hosts = HostIndex(routes.values())
        self.loaded = True
        self._settles = {e: at for e, at in self._settles.items() if at > now}

    def settled_at(self, environment_id: UUID) -> float:
        """When Caddy can no longer be using an older answer than the current one for this environment.

        Before this responder started, Caddy's lookups failed and each kept its cached services
        for the grace period: until start + grace, any name may still be pinned to old ones."""
        return max(self._settles.get(environment_id, 0.0), self._started_at + self.grace)

    def now(self) -> float:
        return self._clock()


def _answered(route: Route | None) -> dict | None:
    """What of a route the answers depend on: all but its revision."""
    return route.model_dump(exclude={"revision"}) if route else None
