"""Upstreams named by a host name rather than an address: a forwarded environment's upstream is
the other region's ingress, as its operator named it (EnvironmentTrafficSet.forward_to).

Caddy dials every upstream through the ingress's own responder, which answers its zone only,
so the loader resolves such names with the system's resolver before it replaces the table,
and the table answers with the address. A name that cannot be resolved keeps its last address,
or (never resolved) stays a name: its dials fail and Caddy retries them, as for a held route."""
import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

from ..routes import Route

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_SECONDS = 2.0


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class UpstreamNames:
    def __init__(self, timeout: float = RESOLVE_TIMEOUT_SECONDS):
        self.timeout = timeout
        self.known: dict[str, str] = {}  # name → the address last resolved

    async def resolve(self, routes: Iterable[Route]) -> dict[str, str]:
        """Every upstream host name of ``routes`` with its address (those resolved, now or before)."""
        names = {host for route in routes for upstream in route.upstreams
                 if not _is_address(host := upstream.address.rpartition(":")[0])}
        results = await asyncio.gather(*(self._resolve(name) for name in names))
        self.known = {name: address for name, address in zip(names, results) if address}
        return dict(self.known)

    async def _resolve(self, name: str) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), self.timeout)
        except (OSError, TimeoutError) as e:
            log.warning("upstream %s not resolved (%s); %s", name, e or type(e).__name__,
                        "keeping its last address" if name in self.known else "its requests wait and fail")
            return self.known.get(name)
        # IPv4 first: a name like localhost also resolves to ::1, where the other side may not listen.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return infos[0][4][0] if infos else self.known.get(name)
