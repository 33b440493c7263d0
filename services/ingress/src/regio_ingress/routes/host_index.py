"""Which route a request's host belongs to, and whether it is served there or redirected: for
the DNS responder, the edge answers and the access log, which all resolve hosts alike."""
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from .route import Route


@dataclass(frozen=True)
class HostRoute:
    route: Route
    redirected: bool  # one of the route's redirect_hosts: answered with a redirect to its primary


class HostIndex:
    """Exact names first, then the nearest wildcard (`*.example.com` covers one label)."""

    def __init__(self, routes: Iterable[Route] = ()):
        self._exact: dict[str, HostRoute] = {}
        self._wildcards: dict[str, HostRoute] = {}  # "example.com" for "*.example.com"
        forwarded = set()
        for route in routes:
            if route.forwarded:
                forwarded.add(route.environment_id)
            for hosts, redirected in ((route.hosts, False), (route.redirect_hosts, True)):
                for host in hosts:
                    if host.startswith("*."):
                        self._wildcards.setdefault(host[2:], HostRoute(route, redirected))
                    else:
                        self._exact.setdefault(host, HostRoute(route, redirected))
        # Environments whose hosts are sent to another region's ingress, which meters them.
        self.forwarded: frozenset[UUID] = frozenset(forwarded)

    def find(self, host: str) -> HostRoute | None:
        """``host`` as a Host header carries it: any case, maybe with a port."""
        host = host.lower().split(":", 1)[0].rstrip(".")  # an IPv6 literal is no application's host anyway
        found = self._exact.get(host)
        if found is None:
            _, _, parent = host.partition(".")
            found = self._wildcards.get(parent)
        return found

    def environment_of(self, host: str) -> UUID | None:
        found = self.find(host)
        return found.route.environment_id if found else None
