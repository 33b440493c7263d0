"""Caddy's admin API: load a whole config, read back what runs."""
import httpx


class CaddyUnavailable(Exception):
    """Caddy did not answer, or refused the config."""


class CaddyAdmin:
    def __init__(self, admin_url: str, timeout: float = 10.0):
        self._client = httpx.AsyncClient(base_url=admin_url.rstrip("/"), timeout=timeout)

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

    async def close(self) -> None:
        await self._client.aclose()
