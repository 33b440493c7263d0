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


@dataclass(frozen=True)
class ProxySettings:
    http_listen: str
    admin_listen: str
    dial_timeout: str = "5s"
    read_timeout: str = "30s"
    max_body_bytes: int = 500 * 1024 * 1024
    upstreams_resolver: str = "udp/127.0.0.1:8753"  # the ingress's DNS responder, as Caddy dials it
    upstreams_refresh: str = "200ms"
    upstreams_grace: str = "3s"


def render(routes: Iterable[Route], proxy: ProxySettings) -> dict:
    ordered = sorted((r for r in routes if r.hosts), key=_precedence)
    return {
        "admin": {"listen": proxy.admin_listen},
        "apps": {
            "http": {
                "servers": {
                    SERVER: {
                        "listen": [proxy.http_listen],
                        # HTTPS and certificates come later; without this Caddy would try to
                        # obtain certificates for every host in the table.
                        "automatic_https": {"disable": True},
                        "routes": [
                            _request_id_route(),
                            *(_environment_route(route, proxy) for route in ordered),
                            _not_found_route(),
                        ],
                        "errors": {"routes": [_error_route()]},
                    }
                }
            }
        },
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


def _environment_route(route: Route, proxy: ProxySettings) -> dict:
    handle: list[dict] = [{"handler": "request_body", "max_size": proxy.max_body_bytes}]
    if route.upstreams:
        handle.append(_reverse_proxy(route, proxy))
    else:
        handle.append({"handler": "static_response", "status_code": 503, "headers": PLAIN_TEXT,
                       "body": UNAVAILABLE_BODY})
    return {
        "@id": f"environment-{route.environment_id}",
        "match": [{"host": list(route.hosts)}],
        "handle": handle,
        "terminal": True,
    }


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
        "transport": {
            "protocol": "http",
            # The SRV targets are names for the instances' addresses (Caddy accepts no address
            # as a target); the responder answers those too.
            "resolver": {"addresses": [proxy.upstreams_resolver]},
            "dial_timeout": proxy.dial_timeout,
            "response_header_timeout": proxy.read_timeout,
            "keep_alive": {"enabled": True, "idle_timeout": "2m", "max_idle_conns_per_host": 32},
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
