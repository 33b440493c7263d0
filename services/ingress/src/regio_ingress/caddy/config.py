"""The whole Caddy config: a pure function of the region's proxy settings, loaded with POST /load.

It holds no host and no instance address. Caddy looks each request up by its host in the
ingress's DNS responder (dns/), which answers with the instances serving that host, or with
the ingress's edge (edge/) for a redirect, an unknown host or an environment without instances.
A load makes Caddy end its old server, closing kept-alive connections that a client may be
sending a request into just then; so the route table never causes one. Caddy is loaded when
the ingress starts and finds it running something else, and when Caddy lost its config.

Certificates are issued on demand, at a host's first TLS handshake, once the edge confirms
that the host is routed."""
import hashlib
import json
from dataclasses import dataclass

from ..access_log.entry import REQUEST_ID_LOG_FIELD
from ..dns.names import CLIENT_SCHEME_VAR, FORWARDED_HOST_LOOKUP, HOST_LOOKUP
from ..edge.app import PERMISSION_PATH
from ..routes.destination import NOT_FOUND_BODY, PublicPorts

SERVER = "ingress"
TLS_SERVER = "ingress-tls"
ACCESS_LOGGER = "http.log.access"
# Errors raised inside Caddy (an upstream that does not answer, a body too large) are
# answered in plain text with the status only: no upstream address, no proxy detail.
ERROR_BODY = "{http.error.status_code} {http.error.status_text}\n"
PLAIN_TEXT = {"Content-Type": ["text/plain; charset=utf-8"]}
HOST_NAME_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
# Methods a proxy may send twice when the first attempt failed after connecting (RFC 9110 §9.2.2).
# A failed dial is always retried: the upstream never saw the request.
IDEMPOTENT_METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
# Also how long a held environment's requests can wait (dns/hold.py): a migration's cut-over
# holds them while no request is in flight to the old instances any more (at most the
# controller's traffic_hold_drain_seconds, 10 s), the database is frozen and caught up and the
# last media synced. 5 s was too short for that; beyond 30 s a client may give up by itself.
# It also bounds how long a request waits for an environment whose instances all refuse.
RETRY_FOR = "30s"
RETRY_INTERVAL = "250ms"
PASSED_OVER_FOR = "2s"


@dataclass(frozen=True)
class ProxySettings:
    http_listen: str
    admin_listen: str
    https_listen: str | None = None  # None: plain HTTP only
    # Listening sockets Caddy inherits (fd/N) and serves the two addresses on; None: it binds them.
    http_socket: str | None = None
    https_socket: str | None = None
    tls_issuer: str = "internal"  # "internal": Caddy's own CA (local regions); "acme": Let's Encrypt & co.
    acme_email: str | None = None
    acme_directory: str | None = None  # None: Caddy's default ACME CA
    access_log_address: str | None = None  # where Caddy sends access log entries (UDP), None: not logged
    edge_address: str = "127.0.0.1:8755"  # the ingress's own answers (edge/), as Caddy dials them
    dial_timeout: str = "5s"
    read_timeout: str = "30s"
    max_body_bytes: int = 500 * 1024 * 1024
    upstreams_resolver: str = "udp/127.0.0.1:8753"  # the ingress's DNS responder, as Caddy dials it
    upstreams_refresh: str = "200ms"
    upstreams_grace: str = "3s"
    # Address ranges of other regions' ingresses, which forward a migrated environment's requests
    # here over plain HTTP: the scheme their client used (X-Forwarded-Proto) is believed from them.
    trusted_forwarders: tuple[str, ...] = ()

    @property
    def http_port(self) -> int:
        return _port_of(self.http_listen)

    @property
    def https_port(self) -> int | None:
        return _port_of(self.https_listen) if self.https_listen else None

    @property
    def public_ports(self) -> PublicPorts:
        return PublicPorts(http=self.http_port, https=self.https_port)


def _port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def render(proxy: ProxySettings) -> dict:
    servers = {SERVER: _server(proxy, tls=False)}
    apps: dict = {"http": {"http_port": proxy.http_port, "servers": servers}}
    if proxy.https_listen:
        apps["http"]["https_port"] = proxy.https_port
        servers[TLS_SERVER] = _server(proxy, tls=True)
        apps["tls"] = _certificates(proxy)
        # Caddy would otherwise try to add its root to the system's trust store.
        apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    config = {"admin": {"listen": proxy.admin_listen}, "apps": apps}
    if proxy.access_log_address:
        config["logging"] = _access_log(proxy.access_log_address)
    return config


def _server(proxy: ProxySettings, tls: bool) -> dict:
    server = {
        "listen": [(proxy.https_socket or proxy.https_listen) if tls else (proxy.http_socket or proxy.http_listen)],
        # Certificates are issued on demand (_certificates), and HTTP is redirected to HTTPS
        # only where an environment asks for it (routes/destination.py).
        "automatic_https": {"disable": True},
        "routes": [
            *([_client_scheme_route(proxy.trusted_forwarders)] if proxy.trusted_forwarders else []),
            _request_id_route(),
            _not_a_host_name_route(),
            {"handle": [{"handler": "request_body", "max_size": proxy.max_body_bytes}, _reverse_proxy(proxy)],
             "terminal": True},
        ],
        "errors": {"routes": [_error_route()]},
    }
    if proxy.trusted_forwarders:
        # Caddy keeps their X-Forwarded-* headers when it proxies (to the instances and the edge).
        server["trusted_proxies"] = {"source": "static", "ranges": list(proxy.trusted_forwarders)}
    if tls:
        server["tls_connection_policies"] = [{}]
        server["protocols"] = ["h1", "h2"]  # no HTTP/3: it would take a UDP port too
    if proxy.access_log_address:
        server["logs"] = {}
    return server


def _certificates(proxy: ProxySettings) -> dict:
    if proxy.tls_issuer == "acme":
        issuer = {"module": "acme", **({"email": proxy.acme_email} if proxy.acme_email else {}),
                  **({"ca": proxy.acme_directory} if proxy.acme_directory else {})}
    else:
        issuer = {"module": "internal"}
    return {"automation": {
        "policies": [{"issuers": [issuer], "on_demand": True}],
        # Asked before a certificate is issued or loaded for a host: only routed hosts get one.
        "on_demand": {"permission": {"module": "http", "endpoint": f"http://{proxy.edge_address}{PERMISSION_PATH}"}},
    }}


def _access_log(address: str) -> dict:
    """Access log entries go to the ingress (one UDP datagram each, never blocking Caddy), which
    hands them to each environment's runtime logs; everything else stays in Caddy's own log."""
    return {
        "logs": {
            "default": {"exclude": [ACCESS_LOGGER]},
            "access": {
                "include": [ACCESS_LOGGER],
                "writer": {"output": "net", "address": f"udp/{address}", "soft_start": True},
                # Headers and TLS details are not shown to anyone: not encoded, not sent, not
                # parsed. Per request, that halved what the access log costs Caddy and the
                # ingress together (bench/ingress.py).
                "encoder": {"format": "filter", "wrap": {"format": "json"},
                            "fields": {"resp_headers": {"filter": "delete"},
                                       "request>headers": {"filter": "delete"},
                                       "request>tls": {"filter": "delete"}}},
            },
        }
    }


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _client_scheme_route(forwarders: tuple[str, ...]) -> dict:
    """The scheme a request is looked up by: its own, or HTTPS when another region's ingress
    forwards it saying its client used HTTPS (a migrated environment's old hosts during the grace
    period). Without this, an environment redirecting HTTP to HTTPS would redirect those HTTPS
    clients again and again, back to the old region that forwards them here over HTTP."""
    return {
        "handle": [
            {"handler": "vars", CLIENT_SCHEME_VAR: "{http.request.scheme}"},
            {"handler": "subroute", "routes": [{
                "match": [{"remote_ip": {"ranges": list(forwarders)}, "header": {"X-Forwarded-Proto": ["https"]}}],
                "handle": [{"handler": "vars", CLIENT_SCHEME_VAR: "https"}],
            }]},
        ]
    }


def _request_id_route() -> dict:
    """Give every request an X-Request-Id the application and its logs can quote, keeping
    one a client or an outer proxy already set. Also drop the headers naming Caddy: its Server
    header, at once (an application's own is kept), and the Via header the proxy adds to the
    response (deferred: it is added later)."""
    return {
        "handle": [
            {"handler": "headers", "response": {"delete": ["Server"]}},
            {"handler": "headers", "response": {"delete": ["Via"], "deferred": True}},
            {
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{"header": {"X-Request-Id": None}}],  # null: the field is absent
                        "handle": [{"handler": "headers", "request": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}],
                    }
                ],
            },
            # The id the application saw, as one field of the access log entry: the request's
            # headers are left out of the entries, whose encoding was most of their cost.
            {"handler": "log_append", "key": REQUEST_ID_LOG_FIELD, "value": "{http.request.header.X-Request-Id}"},
        ]
    }


def _reverse_proxy(proxy: ProxySettings) -> dict:
    # X-Forwarded-For/-Proto/-Host are set by Caddy itself; values a client sent are
    # replaced because no trusted proxies are configured.
    return {
        "handler": "reverse_proxy",
        "dynamic_upstreams": {
            "source": "srv",
            "name": FORWARDED_HOST_LOOKUP if proxy.trusted_forwarders else HOST_LOOKUP,
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


def _not_a_host_name_route() -> dict:
    """A request whose host is no DNS name (none, an IP literal) has no name to look up: Caddy would
    count the failed lookup as an empty one and wait out its retries. It is no application's."""
    return {
        "match": [{"not": [{"vars_regexp": {"{http.request.host}": {"pattern": HOST_NAME_PATTERN}}}]}],
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
