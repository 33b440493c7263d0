"""Which environment a request's host belongs to, as the loaded table says: for the access log,
which reaches each environment's runtime logs and metrics."""
from collections.abc import Iterable
from uuid import UUID

from .route import Route


class HostIndex:
    """Exact names first, then the nearest wildcard (`*.example.com` covers one label), as Caddy matches."""

    def __init__(self, routes: Iterable[Route] = ()):
        self._exact: dict[str, UUID] = {}
        self._wildcards: dict[str, UUID] = {}  # "example.com" for "*.example.com"
        for route in routes:
            for host in [*route.hosts, *route.redirect_hosts]:
                if host.startswith("*."):
                    self._wildcards.setdefault(host[2:], route.environment_id)
                else:
                    self._exact.setdefault(host, route.environment_id)

    def environment_of(self, host: str) -> UUID | None:
        """``host`` as a Host header carries it: any case, maybe with a port."""
        host = host.lower().split(":", 1)[0].rstrip(".")  # an IPv6 literal is no application's host anyway
        found = self._exact.get(host)
        if found is None:
            _, _, parent = host.partition(".")
            found = self._wildcards.get(parent)
        return found
