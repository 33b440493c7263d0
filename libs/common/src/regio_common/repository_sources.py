"""Which git repository sources a region may build from, read the same way by the control
panel (when a repository or an application is saved) and the builder (before every clone).

A repository URL comes from a tenant, so it must not make the builder read the builder
host's files (another tenant's checkouts), reach the host's private networks, or run a
command (git's ``ext::`` transport, options smuggled in as ``-...``). Credentials in a URL
are split off here so they can be stored encrypted and never shown or logged."""
import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

NETWORK_SCHEMES = ("https", "http", "ssh", "git")
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
RESOLVE_TIMEOUT = 5.0

# user@host:path, as GitHub and GitLab show SSH addresses; read as ssh://user@host/path.
SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\s]+)$")
HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
# git check-ref-format's rules, and no leading '-' (it would be read as an option).
BRANCH = re.compile(r"^(?!-)(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*\.lock$)(?!.*/$)(?!.*\.$)[^\x00-\x20\x7f~^:?*\[\\]+$")


class SourceRefused(ValueError):
    """The URL or branch may not be built from; the message says why, without any secret."""


@dataclass(frozen=True)
class RepositorySource:
    scheme: str
    host: str | None  # None for a local repository
    port: int | None
    username: str | None
    path: str
    password: str | None = None  # from https://user:token@...; never shown

    @property
    def local(self) -> bool:
        return self.scheme == "file"

    @property
    def url(self) -> str:
        """The URL without its secret: what is stored, shown, logged and handed to git."""
        if self.local:
            return f"file://{quote(self.path)}"
        user = f"{quote(self.username, safe='')}@" if self.username and self.scheme == "ssh" else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port and self.port != DEFAULT_PORTS[self.scheme] else ""
        return f"{self.scheme}://{user}{host}{port}{self.path}"

    @property
    def effective_port(self) -> int | None:
        return self.port or DEFAULT_PORTS.get(self.scheme)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """HTTP credentials that came in the URL: (username, password or token)."""
        if self.scheme in ("https", "http") and self.password is not None:
            return self.username or "", self.password
        return None


def parse(url: str) -> RepositorySource:
    """The source a URL names, or SourceRefused. Accepts https://, http://, ssh://, git://,
    user@host:path (SSH) and file:// (a local repository: allowed only where the region says)."""
    url = url.strip()
    if not url:
        raise SourceRefused("enter the repository's URL")
    if url.startswith("-"):
        raise SourceRefused("a repository URL cannot start with '-'")
    if "://" not in url and (scp := SCP_LIKE.match(url)) and "::" not in url:
        path = scp["path"] if scp["path"].startswith("/") else f"/{scp['path']}"
        return _network("ssh", scp["host"], None, scp["user"], None, path)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise SourceRefused(f"the repository URL is not valid: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("file", *NETWORK_SCHEMES) or "://" not in url:
        raise SourceRefused("the repository URL must start with https://, http://, ssh://, git://, file:// "
                            "(or be user@host:path)")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7f for ch in url):
        raise SourceRefused("a repository URL cannot contain spaces or control characters")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceRefused("a file:// URL names a path on the builder, not a host")
        if not parts.path.startswith("/"):
            raise SourceRefused("a file:// URL needs an absolute path")
        return RepositorySource("file", None, None, None, unquote(parts.path))
    if parts.query or parts.fragment:
        raise SourceRefused("a repository URL cannot have a query or a fragment")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and scheme != "https" and scheme != "http":
        raise SourceRefused(f"a {scheme}:// URL cannot carry a password; "
                            + ("use the repository's deploy key" if scheme == "ssh" else "use https://"))
    if username is not None and scheme == "git":
        raise SourceRefused("a git:// URL cannot carry a user name")
    return _network(scheme, parts.hostname, port, username, password, parts.path)


def _network(scheme: str, host: str | None, port: int | None, username: str | None, password: str | None,
             path: str) -> RepositorySource:
    if not host:
        raise SourceRefused("the repository URL has no host")
    host = host.lower().rstrip(".")
    if not (HOST_NAME.match(host) or _ip(host) is not None):
        raise SourceRefused(f"{host!r} is not a host name")
    if username is not None and (username.startswith("-") or not username):
        raise SourceRefused("the user name in a repository URL cannot be empty or start with '-'")
    if port == 0:
        raise SourceRefused("the repository URL's port must be between 1 and 65535")
    if not path or path == "/":
        raise SourceRefused("the repository URL has no path to a repository")
    return RepositorySource(scheme, host, port, username, path, password)


def check_branch(branch: str) -> None:
    if not BRANCH.match(branch):
        raise SourceRefused("not a valid branch name (git check-ref-format), or it starts with '-'")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# IPv6 ranges that carry an IPv4 address the host may reach by it; Python's is_global judges
# the IPv6 wrapper, not the IPv4 address inside (64:ff9b::a9fe:a9fe is global on 3.11).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
# RFC 8215's local-use NAT64 prefix: where the IPv4 address sits depends on the operator's prefix
# length, and nothing public lives there, so it is refused whole.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d (and :: and ::1)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses ``address`` leads to (mapped, 6to4, Teredo, NAT64)."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in found if ipv4 is not None]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Reachable on the internet: not loopback, link-local (cloud metadata), private, shared or reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64 or address in _IPV4_COMPATIBLE:
            return False
        if embedded := _embedded_ipv4(address):
            return all(is_public(ipv4) for ipv4 in embedded)
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` has now (an IP literal is its own). SourceRefused when it has none."""
    if (literal := _ip(host)) is not None:
        return [str(literal)]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise SourceRefused(f"the host {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(ipaddress.ip_address(info[4][0])) for info in infos))
    if not addresses:
        raise SourceRefused(f"the host {host!r} does not resolve")
    return addresses


def refuse_private(host: str, addresses: list[str]) -> None:
    """Every address must be public: one private address is enough to reach the host's networks."""
    for address in addresses:
        if not is_public(ipaddress.ip_address(address)):
            what = host if host == address else f"{host} ({address})"
            raise SourceRefused(f"{what} is a loopback, link-local or private address; "
                                "this region builds only from public hosts")


def check(source: RepositorySource, *, allow_local: bool) -> None:
    """What can be told without the network."""
    if source.local and not allow_local:
        raise SourceRefused("local repositories (file://) are not allowed in this region")
