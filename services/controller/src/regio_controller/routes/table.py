"""The route of an environment as the ingress receives it, built in one place for both
the RoutesChanged event and the polled /internal/v1/routes list."""
from collections.abc import Iterable
from uuid import UUID

from pydantic import BaseModel

from regio_common.messages import RoutesChanged, Upstream

from ..db.models import Instance


class Route(BaseModel):
    environment_id: UUID
    hosts: list[str]
    upstreams: list[Upstream]
    revision: int


def upstreams_of(instances: Iterable[Instance]) -> list[Upstream]:
    return [Upstream(instance_id=i.id, address=i.address) for i in instances if i.address]


def routes_changed(environment_id: UUID, hosts: list[str], instances: Iterable[Instance],
                   revision: int) -> RoutesChanged:
    return RoutesChanged(environment_id=environment_id, hosts=list(hosts), upstreams=upstreams_of(instances),
                         revision=revision)
