"""The whole Caddy config for a route table: a pure function, loaded atomically with POST /load.

Caddy is given the full state every time, never a patch, so what runs is exactly
what the table says and a restarted or wiped Caddy is healed by one load.

The config holds no instance address: Caddy looks each environment's instances up in the
ingress's DNS responder (dns/), because every load makes Caddy replace its listening
sockets and the kernel drops the connections queued on the old ones. So a deployment,
which only moves an environment to other instances, changes no config and loads nothing."""
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from ..dns.names import upstreams_name
from ..routes import Route

SERVER = "ingress"
TLS_SERVER = "ingress-tls"
ACCESS_LOGGER = "http.log.access"
NOT_FOUND_BODY = "404 Not Found: no application is served at this address.\n"
UNAVAILABLE_BODY = "503 Service Unavailable: the application has no running instance.\n"
# Errors raised inside Caddy (an upstream that does not answer, a body too large) are
# answered in plain text with the status only: no upstream address, no proxy detail.
ERROR_BODY = "{http.error.status_code} {http.error.status_text}\n"
PLAIN_TEXT = {"Content-Type": ["text/plain; charset=utf-8"]}
# Methods a proxy may send twice when the first attempt failed after connecting (RFC 9110 §9.2.2).
# A failed dial is always retried: the upstream never saw the request.
IDEMPOTENT_METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
RETRY_FOR = "5s"
RETRY_INTERVAL = "250ms"
PASSED_OVER_FOR = "2s"


@dataclass(frozen=True)
class ProxySettings:
    http_listen: str
    admin_listen: str
    https_listen: str | None = None  # None: plain HTTP only
    tls_issuer: str = "internal"  # "internal": Caddy's own CA (local regions); "acme": Let's Encrypt & co.
    acme_email: str | None = None
    acme_directory: str | None = None  # None: Caddy's default ACME CA
    access_log_address: str | None = None  # where Caddy sends access log entries (UDP), None: not logged
    dial_timeout: str = "5s"
    read_timeout: str = "30s"
    max_body_bytes: int = 500 * 1024 * 1024
    upstreams_resolver: str = "udp/127.0.0.1:8753"  # the ingress's DNS responder, as Caddy dials it
    upstreams_refresh: str = "200ms"
    upstreams_grace: str = "3s"

    @property
    def http_port(self) -> int:
        return _port_of(self.http_listen)

    @property
    def https_port(self) -> int | None:
        return _port_of(self.https_listen) if self.https_listen else None


def _port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def render(routes: Iterable[Route], proxy: ProxySettings) -> dict:
    ordered = sorted((r for r in routes if r.hosts), key=_precedence)
    servers = {SERVER: _server(ordered, proxy, tls=False)}
    apps: dict = {"http": {"http_port": proxy.http_port, "servers": servers}}
    if proxy.https_listen:
        apps["http"]["https_port"] = proxy.https_port
        servers[TLS_SERVER] = _server(ordered, proxy, tls=True)
        apps["tls"] = _certificates(ordered, proxy)
        # Caddy would otherwise try to add its root to the system's trust store.
        apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    config = {"admin": {"listen": proxy.admin_listen}, "apps": apps}
    if proxy.access_log_address:
        config["logging"] = _access_log(proxy.access_log_address)
    return config


def _server(ordered: list[Route], proxy: ProxySettings, tls: bool) -> dict:
    server = {
        "listen": [proxy.https_listen if tls else proxy.http_listen],
        # Certificates are managed from the table (_certificates), not guessed from routes,
        # and HTTP is redirected to HTTPS only where an environment asks for it.
        "automatic_https": {"disable": True},
        "routes": [
            _request_id_route(),
            *(r for route in ordered for r in _environment_routes(route, proxy, tls)),
            _not_found_route(),
        ],
        "errors": {"routes": [_error_route()]},
    }
    if tls:
        server["tls_connection_policies"] = [{}]
        server["protocols"] = ["h1", "h2"]  # no HTTP/3: it would take a UDP port too
    if proxy.access_log_address:
        server["logs"] = {}
    return server


def _certificates(ordered: list[Route], proxy: ProxySettings) -> dict:
    hosts = sorted({host for route in ordered for host in [*route.hosts, *route.redirect_hosts]})
    if proxy.tls_issuer == "acme":
        issuer = {"module": "acme", **({"email": proxy.acme_email} if proxy.acme_email else {}),
                  **({"ca": proxy.acme_directory} if proxy.acme_directory else {})}
    else:
        issuer = {"module": "internal"}
    tls: dict = {"automation": {"policies": [{"issuers": [issuer]}]}}
    if hosts:
        tls["certificates"] = {"automate": hosts}
    return tls


def _access_log(address: str) -> dict:
    """Access log entries go to the ingress (one UDP datagram each, never blocking Caddy), which
    hands them to each environment's runtime logs; everything else stays in Caddy's own log."""
    return {
        "logs": {
            "default": {"exclude": [ACCESS_LOGGER]},
            "access": {
                "include": [ACCESS_LOGGER],
                "writer": {"output": "net", "address": f"udp/{address}", "soft_start": True},
                # Response headers and TLS details are not shown to anyone: spare the bytes.
                "encoder": {"format": "filter", "wrap": {"format": "json"},
                            "fields": {"resp_headers": {"filter": "delete"},
                                       "request>tls": {"filter": "delete"}}},
            },
        }
    }


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _precedence(route: Route) -> tuple[bool, str]:
    # Exact host names before wildcards, so `app.example.com` beats `*.example.com`;
    # then a stable order, so an unchanged table renders the same config.
    return any("*" in host for host in route.hosts), str(route.environment_id)


def _request_id_route() -> dict:
    """Give every request an X-Request-Id the application and its logs can quote, keeping
    one a client or an outer proxy already set. Also drop Caddy's Server header."""
    return {
        "handle": [
            {"handler": "headers", "response": {"delete": ["Server"]}},
            {
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{"header": {"X-Request-Id": None}}],  # null: the field is absent
                        "handle": [{"handler": "headers", "request": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}],
                    }
                ],
            },
        ]
    }


def _environment_routes(route: Route, proxy: ProxySettings, tls: bool) -> list[dict]:
    route_id = f"{'tls-' if tls else ''}environment-{route.environment_id}"  # ids are unique across servers
    routes = []
    if route.redirect_hosts:
        routes.append(_redirect_route(route, proxy, tls))
    if route.https_redirect and not tls and proxy.https_listen:
        routes.append({
            "@id": route_id,
            "match": [{"host": list(route.hosts)}],
            "handle": [_redirect(f"https://{{http.request.host}}{_port_suffix(proxy.https_port, 443)}"
                                 "{http.request.uri}", status=308)],  # 308: the method and body are kept
            "terminal": True,
        })
        return routes
    handle: list[dict] = [{"handler": "request_body", "max_size": proxy.max_body_bytes}]
    if route.upstreams:
        handle.append(_reverse_proxy(route, proxy))
    else:
        handle.append({"handler": "static_response", "status_code": 503, "headers": PLAIN_TEXT,
                       "body": UNAVAILABLE_BODY})
    routes.append({
        "@id": route_id,
        "match": [{"host": list(route.hosts)}],
        "handle": handle,
        "terminal": True,
    })
    return routes


def _redirect_route(route: Route, proxy: ProxySettings, tls: bool) -> dict:
    """Redirect domains answer 301 to the primary domain (the first host), path and query kept,
    on the scheme the environment is served on."""
    if tls or (route.https_redirect and proxy.https_listen):
        target = f"https://{route.hosts[0]}{_port_suffix(proxy.https_port, 443)}"
    else:
        target = f"http://{route.hosts[0]}{_port_suffix(proxy.http_port, 80)}"
    return {
        "match": [{"host": list(route.redirect_hosts)}],
        "handle": [_redirect(target + "{http.request.uri}", status=301)],
        "terminal": True,
    }


def _redirect(location: str, status: int) -> dict:
    return {"handler": "static_response", "status_code": status, "headers": {"Location": [location]}}


def _port_suffix(port: int | None, default: int) -> str:
    return "" if port in (None, default) else f":{port}"


def _reverse_proxy(route: Route, proxy: ProxySettings) -> dict:
    # X-Forwarded-For/-Proto/-Host are set by Caddy itself; values a client sent are
    # replaced because no trusted proxies are configured.
    return {
        "handler": "reverse_proxy",
        "dynamic_upstreams": {
            "source": "srv",
            "name": upstreams_name(route.environment_id) + ".",  # rooted: no search domains tried
            "refresh": proxy.upstreams_refresh,
            # After a failed lookup Caddy keeps the instances it had for this long, then asks
            # again, and keeps them again if it fails again: an ingress that is down leaves
            # the last instances serving. See dns/table.py for what it costs a switch.
            "grace_period": proxy.upstreams_grace,
            "resolver": {"addresses": [proxy.upstreams_resolver]},
        },
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": RETRY_FOR,
            "try_interval": RETRY_INTERVAL,
            "retry_match": [{"method": IDEMPOTENT_METHODS}],
        },
        # An instance that refused a connection or broke one is passed over for a moment,
        # so requests do not queue behind a killed container until the controller notices.
        "health_checks": {"passive": {"fail_duration": PASSED_OVER_FOR, "max_fails": 1}},
        "transport": {
            "protocol": "http",
            # The SRV targets are names for the instances' addresses (Caddy accepts no address
            # as a target); the responder answers those too.
            "resolver": {"addresses": [proxy.upstreams_resolver]},
            "dial_timeout": proxy.dial_timeout,
            "response_header_timeout": proxy.read_timeout,
            # Kept open to each instance: more than the client connections one instance usually
            # has, so a busy instance is not dialled (and looked up) again per request.
            "keep_alive": {"enabled": True, "idle_timeout": "2m", "max_idle_conns_per_host": 128},
        },
    }


def _not_found_route() -> dict:
    return {
        "handle": [{"handler": "static_response", "status_code": 404, "headers": PLAIN_TEXT, "body": NOT_FOUND_BODY}],
        "terminal": True,
    }


def _error_route() -> dict:
    return {
        "handle": [
            {"handler": "headers", "response": {"delete": ["Server"]}},
            {"handler": "static_response", "status_code": "{http.error.status_code}", "headers": PLAIN_TEXT,
             "body": ERROR_BODY},
        ]
    }
