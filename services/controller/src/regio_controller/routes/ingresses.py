"""The region's ingresses, asked over their internal API how many requests they have in
flight to given upstream addresses (GET /internal/v1/upstreams on each)."""
import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field

import httpx

from regio_common.service_auth import SERVICE_TOKEN_HEADER


@dataclass
class InFlight:
    requests: int = 0  # summed over the ingresses that answered
    unanswered: dict[str, str] = field(default_factory=dict)  # ingress URL → why it could not be asked

    @property
    def idle(self) -> bool:
        """Every ingress answered, and none has a request in flight."""
        return not self.unanswered and self.requests == 0


class Ingresses:
    def __init__(self, http: httpx.AsyncClient, urls: list[str], service_token: str):
        self.http = http
        self.urls = [url.rstrip("/") for url in urls]
        self.service_token = service_token

    async def in_flight(self, addresses: Collection[str], timeout: float) -> InFlight:
        """What every ingress has in flight to ``addresses``, each asked at once, each within ``timeout``."""
        answers = await asyncio.gather(*(self._ask(url, addresses, timeout) for url in self.urls))
        found = InFlight()
        for url, answer in zip(self.urls, answers):
            if isinstance(answer, str):
                found.unanswered[url] = answer
            else:
                found.requests += answer
        return found

    async def _ask(self, url: str, addresses: Collection[str], timeout: float) -> int | str:
        """Requests in flight to ``addresses``, or why the ingress could not say."""
        try:
            response = await self.http.get(f"{url}/internal/v1/upstreams", timeout=timeout,
                                           headers={SERVICE_TOKEN_HEADER: self.service_token})
            response.raise_for_status()
            return sum(u["in_flight"] for u in response.json() if u["address"] in addresses)
        except httpx.HTTPStatusError as e:
            return f"HTTP {e.response.status_code}"
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        except (ValueError, KeyError, TypeError) as e:
            return f"an unexpected answer: {e!r}"
