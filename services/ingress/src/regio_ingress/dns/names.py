"""The DNS names of the upstreams zone: one SRV name per environment, one address name per instance host.

Caddy drops SRV targets that are not host names (an IP address is not one), so each target is a
name for the address, which Caddy's transport resolves through the same responder when it dials."""
import ipaddress
from uuid import UUID

ZONE = "upstreams.regio.internal"
ADDRESSES = f"addr.{ZONE}"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def upstreams_name(environment_id: UUID) -> str:
    """The SRV name Caddy looks an environment's instances up by (no trailing dot)."""
    return f"_http._tcp.{environment_id}.{ZONE}"


def target_name(host: str) -> str:
    """The name an instance's host is dialled by: its address spelled as one label, or the host itself."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host  # a host name resolves as it is
    return f"{address.exploded.replace('.', '-').replace(':', '-')}.{ADDRESSES}"


def address_of_name(name: str) -> Address | None:
    """The address an address name spells; None for any other name."""
    label, _, rest = name.rstrip(".").partition(".")
    if rest != ADDRESSES:
        return None
    parts = label.split("-")
    try:
        return ipaddress.ip_address(".".join(parts) if len(parts) == 4 else ":".join(parts))
    except ValueError:
        return None


def address_of_dial(dial: str) -> str:
    """The upstream address (host:port, as routes spell it) for an address Caddy dialled."""
    host, _, port = dial.rpartition(":")
    address = address_of_name(host)
    if address is None:
        return f"{host.rstrip('.')}:{port}"  # SRV targets come back rooted
    return f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"


def in_zone(name: str) -> bool:
    return name == ZONE or name.endswith("." + ZONE)
