"""One environment's route, as the controller announces it and as Caddy gets it."""
import re
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from regio_common.messages import RoutesChanged, Upstream

# A DNS name, optionally with one leading wildcard label. Anything else is refused: Caddy
# would read `{…}` in a host matcher as a placeholder, able to match every request.
HOST_NAME = re.compile(r"(\*\.)?([a-z0-9_-]+\.)*[a-z0-9_-]+")


def normalize_host(host: str) -> str:
    """The spelling a Host header carries: lowercase, no trailing dot, internationalized names in punycode."""
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if not HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name")
    return host


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)

    environment_id: UUID
    hosts: list[str]
    upstreams: list[Upstream]  # empty: the hosts are kept but answer 503
    revision: int
    redirect_hosts: list[str] = []  # answer 301 to hosts[0], the primary domain
    https_redirect: bool = False  # plain HTTP on `hosts` is redirected to HTTPS
    held: bool = False  # requests to `hosts` wait at the hold address (dns/hold.py) instead of `upstreams`

    @field_validator("hosts", "redirect_hosts")
    @classmethod
    def _normalize_hosts(cls, hosts: list[str]) -> list[str]:
        # Host names are case-insensitive: keep one spelling of each, in the given order.
        return list(dict.fromkeys(normalize_host(host) for host in hosts))

    @field_validator("upstreams")
    @classmethod
    def _check_addresses(cls, upstreams: list[Upstream]) -> list[Upstream]:
        # Caddy refuses a whole config over one bad address; refuse the route instead.
        for upstream in upstreams:
            host, _, port = upstream.address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/ {}"):
                raise ValueError(f"upstream address {upstream.address!r} is not host:port")
        return upstreams

    @property
    def forwarded(self) -> bool:
        """The environment moved to another region (a migration's grace period), whose ingress this
        one sends the hosts to: that one serves, logs and meters the requests. The controller names
        that single upstream ``uuid5(environment, address)`` (its routes/table.py), never an instance."""
        return (len(self.upstreams) == 1
                and self.upstreams[0].instance_id == uuid5(self.environment_id, self.upstreams[0].address))

    @classmethod
    def from_message(cls, message: RoutesChanged) -> "Route":
        return cls(environment_id=message.environment_id, hosts=message.hosts, upstreams=message.upstreams,
                   revision=message.revision, redirect_hosts=message.redirect_hosts,
                   https_redirect=message.https_redirect, held=message.held)

    @model_validator(mode="after")
    def _redirects_need_a_primary(self) -> "Route":
        if self.redirect_hosts and not self.hosts:
            raise ValueError("redirect hosts without a primary host to redirect to")
        if set(self.redirect_hosts) & set(self.hosts):
            raise ValueError("a host cannot be both served and redirected")
        return self

