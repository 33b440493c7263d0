"""The route of an environment as the ingress receives it, built in one place for both
the RoutesChanged event and the polled /internal/v1/routes list: the workload's hosts and
redirects, its instances as upstreams, under its current route revision; or, while a
migration holds or forwards its traffic, no upstream (held) or the region it moved to."""
from collections.abc import Iterable
from uuid import UUID, uuid5

from pydantic import BaseModel, Field

from regio_common.messages import RoutesChanged, Traffic, Upstream

from ..db.models import Instance, Workload


class Route(BaseModel):
    environment_id: UUID
    hosts: list[str]  # served: the primary first, then aliases
    upstreams: list[Upstream]
    revision: int
    redirect_hosts: list[str] = Field(default_factory=list)  # answered with a 301 to the primary, never proxied
    https_redirect: bool = False  # plain HTTP on ``hosts`` answers a redirect to HTTPS
    held: bool = False  # Traffic.HOLD: requests wait at the ingress, upstreams empty


def upstreams_of(instances: Iterable[Instance]) -> list[Upstream]:
    return [Upstream(instance_id=i.id, address=i.address) for i in instances if i.address]


def route_of(workload: Workload, instances: Iterable[Instance]) -> Route:
    """The workload's route to ``instances``, under its current revision (the caller bumps it first).
    Its traffic mode wins over the instances, whoever publishes the route (a rollout, the healer)."""
    if workload.traffic == Traffic.HOLD:
        return Route(environment_id=workload.environment_id, hosts=list(workload.hosts), upstreams=[],
                     revision=workload.route_revision, redirect_hosts=list(workload.redirect_hosts),
                     https_redirect=workload.https_redirect, held=True)
    if workload.traffic == Traffic.FORWARD:
        # The other region's ingress answers the hosts (and their redirects) as it routes them itself.
        forward = Upstream(instance_id=uuid5(workload.environment_id, workload.forward_to), address=workload.forward_to)
        return Route(environment_id=workload.environment_id, hosts=list(workload.forward_hosts), upstreams=[forward],
                     revision=workload.route_revision)
    return Route(environment_id=workload.environment_id, hosts=list(workload.hosts),
                 upstreams=upstreams_of(instances), revision=workload.route_revision,
                 redirect_hosts=list(workload.redirect_hosts), https_redirect=workload.https_redirect)


def routes_changed(workload: Workload, instances: Iterable[Instance]) -> RoutesChanged:
    return RoutesChanged(**dict(route_of(workload, instances)))


def route_emptied(environment_id: UUID, revision: int) -> RoutesChanged:
    """No hosts, redirects or upstreams: the ingress stops answering for the environment."""
    return RoutesChanged(environment_id=environment_id, hosts=[], upstreams=[], revision=revision)
