"""One environment's route, as the controller announces it and as Caddy gets it."""
from uuid import UUID

from pydantic import BaseModel, ConfigDict, field_validator

from regio_common.messages import RoutesChanged, Upstream


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)

    environment_id: UUID
    hosts: list[str]
    upstreams: list[Upstream]  # empty: the hosts are kept but answer 503
    revision: int

    @field_validator("hosts")
    @classmethod
    def _normalize_hosts(cls, hosts: list[str]) -> list[str]:
        # Host names are case-insensitive; keep one spelling, in the given order.
        seen: dict[str, None] = {}
        for host in hosts:
            host = host.strip().rstrip(".").lower()
            if host:
                seen.setdefault(host)
        return list(seen)

    @classmethod
    def from_message(cls, message: RoutesChanged) -> "Route":
        return cls(environment_id=message.environment_id, hosts=message.hosts, upstreams=message.upstreams,
                   revision=message.revision)

