"""Where a request goes, decided from its host and scheme alone: to the environment's instances,
or to an answer the ingress gives itself (a redirect, or a page saying why nothing serves it).

Both Caddy's upstream lookups (dns/) and the edge answers (edge/) come here, so what a host
does changes with the route table and never needs a new Caddy config."""
from dataclasses import dataclass

from .host_index import HostIndex
from .route import Route

NOT_FOUND_BODY = "404 Not Found: no application is served at this address.\n"
UNAVAILABLE_BODY = "503 Service Unavailable: the application has no running instance.\n"


@dataclass(frozen=True)
class PublicPorts:
    """Where the region's clients reach the ingress, as redirects must name it."""
    http: int
    https: int | None  # None: no HTTPS

    def origin(self, scheme: str, host: str) -> str:
        port, default = (self.https, 443) if scheme == "https" else (self.http, 80)
        return f"{scheme}://{host}{'' if port == default else f':{port}'}"


@dataclass(frozen=True)
class EdgeAnswer:
    """A response the ingress gives without an instance."""
    status: int
    location: str | None = None  # a redirect's target, to which the request's path and query are added
    body: str = ""


def destination(hosts: HostIndex, host: str, scheme: str, ports: PublicPorts) -> Route | EdgeAnswer:
    """The route whose instances serve the request, or the answer the ingress gives instead."""
    found = hosts.find(host)
    if found is None:
        return EdgeAnswer(404, body=NOT_FOUND_BODY)
    route = found.route
    secure = ports.https is not None and (scheme == "https" or route.https_redirect)
    if found.redirected:
        # Redirect domains go to the primary domain (the first host), on the scheme it is served on.
        return EdgeAnswer(301, location=ports.origin("https" if secure else "http", route.hosts[0]))
    if scheme == "http" and secure:
        # The environment is served over HTTPS only. 308: the method and body are kept.
        return EdgeAnswer(308, location=ports.origin("https", host.lower().split(":", 1)[0]))
    if not route.upstreams and not route.held:
        return EdgeAnswer(503, body=UNAVAILABLE_BODY)
    return route
