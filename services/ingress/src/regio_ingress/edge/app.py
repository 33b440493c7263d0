"""What the edge answers. Caddy sends it every request whose host the DNS responder did not give
instances for: an unknown host (404), a redirect domain (301), plain HTTP to an environment served
over HTTPS only (308), an environment without a running instance (503). And Caddy asks it, before
issuing a certificate on demand, whether the host is routed at all."""
from urllib.parse import parse_qs

from ..dns.table import UpstreamTable
from ..routes import Route
from ..routes.destination import EdgeAnswer, destination

PERMISSION_PATH = "/certificate-permission"
PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")
# Answered when the table gave the host instances since Caddy looked it up (at most its refresh ago),
# and before the table is read at all.
BETWEEN_TABLES = EdgeAnswer(503, body="503 Service Unavailable: the application is being moved; try again.\n")


class EdgeApp:
    """An ASGI application reading the upstream table the DNS responder answers from."""

    def __init__(self, table: UpstreamTable):
        self.table = table

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        # Caddy sets X-Forwarded-For on every request it proxies, and not on its own permission ask.
        if scope["path"] == PERMISSION_PATH and "x-forwarded-for" not in headers:
            domain = parse_qs(scope["query_string"].decode("latin-1")).get("domain", [""])[0]
            allowed = bool(domain) and self.table.hosts.find(domain) is not None
            await _respond(send, EdgeAnswer(200 if allowed else 403))
            return
        if not self.table.loaded:
            answer = BETWEEN_TABLES
        else:
            to = destination(self.table.hosts, headers.get("host", ""), headers.get("x-forwarded-proto", "http"),
                             self.table.ports)
            answer = BETWEEN_TABLES if isinstance(to, Route) else to
        extra = []
        if answer.location is not None:
            target = scope.get("raw_path") or scope["path"].encode()
            if scope["query_string"]:
                target += b"?" + scope["query_string"]
            extra.append((b"location", answer.location.encode("latin-1") + target))
        if answer is BETWEEN_TABLES:
            extra.append((b"retry-after", b"1"))
        await _respond(send, answer, extra)


async def _respond(send, answer: EdgeAnswer, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = answer.body.encode()
    await send({"type": "http.response.start", "status": answer.status,
                "headers": [PLAIN_TEXT, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
