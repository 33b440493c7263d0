"""The route of an environment as the ingress receives it, built in one place for both
the RoutesChanged event and the polled /internal/v1/routes list: the workload's hosts and
redirects, its instances as upstreams, under its current route revision."""
from collections.abc import Iterable
from uuid import UUID

from pydantic import BaseModel, Field

from regio_common.messages import RoutesChanged, Upstream

from ..db.models import Instance, Workload


class Route(BaseModel):
    environment_id: UUID
    hosts: list[str]  # served: the primary first, then aliases
    upstreams: list[Upstream]
    revision: int
    redirect_hosts: list[str] = Field(default_factory=list)  # answered with a 301 to the primary, never proxied
    https_redirect: bool = False  # plain HTTP on ``hosts`` answers a redirect to HTTPS


def upstreams_of(instances: Iterable[Instance]) -> list[Upstream]:
    return [Upstream(instance_id=i.id, address=i.address) for i in instances if i.address]


def route_of(workload: Workload, instances: Iterable[Instance]) -> Route:
    """The workload's route to ``instances``, under its current revision (the caller bumps it first)."""
    return Route(environment_id=workload.environment_id, hosts=list(workload.hosts),
                 upstreams=upstreams_of(instances), revision=workload.route_revision,
                 redirect_hosts=list(workload.redirect_hosts), https_redirect=workload.https_redirect)


def routes_changed(workload: Workload, instances: Iterable[Instance]) -> RoutesChanged:
    return RoutesChanged(**dict(route_of(workload, instances)))


def route_emptied(environment_id: UUID, revision: int) -> RoutesChanged:
    """No hosts, redirects or upstreams: the ingress stops answering for the environment."""
    return RoutesChanged(environment_id=environment_id, hosts=[], upstreams=[], revision=revision)
