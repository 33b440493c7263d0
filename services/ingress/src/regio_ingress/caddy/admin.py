"""Caddy's admin API: load a whole config, read back what runs and what it carries."""
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..dns.names import address_of_dial


class CaddyUnavailable(Exception):
    """Caddy did not answer, or refused the config."""


@dataclass(frozen=True)
class UpstreamLoad:
    address: str  # as the config dials it: host:port
    in_flight: int  # requests proxied to it and not yet answered


class CaddyAdmin:
    def __init__(self, socket: Path, timeout: float = 10.0):
        # Over the admin API's Unix socket; Caddy ignores the host of the URL there.
        self._client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket)),
                                         base_url="http://caddy", timeout=timeout)

    async def load(self, config: dict) -> None:
        """Replace the running config in one step: Caddy switches over, or keeps the old one and says why."""
        try:
            response = await self._client.post("/load", json=config)
        except httpx.HTTPError as e:
            raise CaddyUnavailable(f"caddy admin unreachable: {e!r}") from e
        if response.status_code != 200:
            raise CaddyUnavailable(f"caddy refused the config ({response.status_code}): {response.text.strip()}")

    async def running_config(self) -> dict | None:
        """The config Caddy runs now (None when it runs none)."""
        try:
            response = await self._client.get("/config/")
            response.raise_for_status()
        except httpx.HTTPError as e:
            raise CaddyUnavailable(f"caddy admin unreachable: {e!r}") from e
        return response.json()

    async def upstreams(self) -> list[UpstreamLoad]:
        """Requests in flight per upstream address. An upstream the running config dropped stays
        listed, from the config it was in, until that config's last request to it has ended.

        Instances found through DNS are listed by their address names, and may be listed twice
        (as a looked-up host and as an address with requests in flight), both times with the same count."""
        try:
            response = await self._client.get("/reverse_proxy/upstreams")
            response.raise_for_status()
            in_flight: dict[str, int] = {}
            for u in response.json():
                address = address_of_dial(u["address"])
                in_flight[address] = max(in_flight.get(address, 0), u["num_requests"])
            return [UpstreamLoad(address, count) for address, count in in_flight.items()]
        except httpx.HTTPError as e:
            raise CaddyUnavailable(f"caddy admin unreachable: {e!r}") from e
        except (ValueError, KeyError, TypeError) as e:
            raise CaddyUnavailable(f"caddy listed its upstreams in an unexpected form: {e!r}") from e

    async def close(self) -> None:
        await self._client.aclose()
