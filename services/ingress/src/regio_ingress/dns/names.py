"""The DNS names of the upstreams zone: one SRV name per request host and scheme, one address name
per instance host.

Caddy looks a request up by its own host (HOST_LOOKUP, filled in per request), so a host added,
moved or removed is a change of DNS answers, never of Caddy's config.

Caddy drops SRV targets that are not host names (an IP address is not one), so each target is a
name for the address, which Caddy's transport resolves through the same responder when it dials."""
import ipaddress

ZONE = "upstreams.regio.internal"
ADDRESSES = f"addr.{ZONE}"
HOSTS = f"hosts.{ZONE}"
# Rooted, so no search domains are tried. Caddy fills the placeholders in for each request.
HOST_LOOKUP = f"{{http.request.host}}.{{http.request.scheme}}.{HOSTS}."
# The same with the scheme the client used at another region's ingress that forwards here
# (caddy/config.py, trusted forwarders): an HTTPS request forwarded over HTTP is looked up as HTTPS.
CLIENT_SCHEME_VAR = "regio_client_scheme"
FORWARDED_HOST_LOOKUP = f"{{http.request.host}}.{{http.vars.{CLIENT_SCHEME_VAR}}}.{HOSTS}."
SCHEMES = ("http", "https")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def request_of_name(name: str) -> tuple[str, str] | None:
    """The host and scheme a HOST_LOOKUP name was filled in with; None for any other name."""
    prefix, _, zone = name.rstrip(".").lower().rpartition("." + HOSTS)
    host, _, scheme = prefix.rpartition(".")
    if zone or not host or scheme not in SCHEMES:
        return None
    return host, scheme


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
