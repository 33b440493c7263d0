"""One access log entry as Caddy writes it (json encoder, one entry per datagram), and the
line an environment's runtime logs show for it.

Only the fields read here are declared; the rest (response headers, TLS details, Caddy's own
fields) are ignored, and the ones a filter encoder may delete have defaults."""
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

# Go canonicalises header names ("x-request-id" arrives as "X-Request-Id"), HTTP/2 ones too.
REQUEST_ID_HEADER = "X-Request-Id"
# The entry's field with that header's value as the application received it (the ingress's
# config appends it; the request's headers are not logged).
REQUEST_ID_LOG_FIELD = "request_id"
# A client chooses both: clipped, so that one request cannot fill an environment's log.
MAX_URI = 2048
MAX_REQUEST_ID = 128


class Request(BaseModel):
    method: str
    host: str  # as the client sent it: on HTTPS with the port ("a.test:8743")
    uri: str  # path and query
    remote_ip: str = ""
    client_ip: str = ""  # the client behind trusted proxies, as Caddy decided; else the remote address
    # Lists of strings, not validated further: only the request id is read, from entries of a
    # config from before REQUEST_ID_LOG_FIELD.
    headers: dict[str, Any] = {}


class AccessEntry(BaseModel):
    ts: float  # when Caddy logged it (the response was written), seconds since the epoch
    request: Request
    status: int
    duration: float  # seconds (Caddy's default duration format)
    size: int = 0  # response body bytes
    # Caddy's id for the request ({http.request.uuid}), logged once something used it: the
    # ingress's config sets it as X-Request-Id when the client sent none.
    uuid: str | None = None
    logged_request_id: str | None = Field(None, alias=REQUEST_ID_LOG_FIELD)

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    @property
    def host_name(self) -> str:
        return host_name(self.request.host)

    @property
    def client(self) -> str:
        return self.request.client_ip or self.request.remote_ip

    @property
    def request_id(self) -> str | None:
        """The X-Request-Id the application saw: the client's own, else the one Caddy gave it."""
        if self.logged_request_id:
            return self.logged_request_id
        values = self.request.headers.get(REQUEST_ID_HEADER)
        if isinstance(values, list) and values and isinstance(values[0], str) and values[0]:
            return values[0]
        return self.uuid


def host_name(host: str) -> str:
    """The host name an environment is found by: without the port, lowercase."""
    if host.startswith("["):  # an IPv6 address, "[::1]:8743"
        return host[: host.find("]") + 1].lower()
    return host.partition(":")[0].lower()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def duration_text(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.1f}ms" if milliseconds < 10 else f"{milliseconds:.0f}ms"


def message(entry: AccessEntry) -> str:
    """`GET /x?y=1 200 0.1ms 8B client=127.0.0.1 request=<id>`: the request, its answer, who asked,
    and the id the application saw in X-Request-Id, to find its own lines about the request."""
    request = entry.request
    text = (f"{request.method} {_clip(request.uri, MAX_URI)} {entry.status} {duration_text(entry.duration)} "
            f"{entry.size}B client={entry.client or '-'}")
    request_id = entry.request_id
    if request_id:
        text += f" request={_clip(request_id, MAX_REQUEST_ID)}"
    return text
