"""The Caddy config rendered from a route table, checked as data."""
from uuid import UUID

import pytest
from pydantic import ValidationError

from regio_common.messages import Upstream
from regio_ingress.caddy.config import ProxySettings, config_hash, render
from regio_ingress.routes import Route

SHOP = UUID("00000000-0000-0000-0000-00000000000a")
BLOG = UUID("00000000-0000-0000-0000-00000000000b")
WILDCARD = UUID("00000000-0000-0000-0000-000000000001")
INSTANCE_1 = UUID("10000000-0000-0000-0000-000000000001")
INSTANCE_2 = UUID("10000000-0000-0000-0000-000000000002")
PROXY = ProxySettings(http_listen="127.0.0.1:8780", admin_listen="127.0.0.1:8719")
PLAIN_TEXT = {"Content-Type": ["text/plain; charset=utf-8"]}


def test_a_known_table_renders_to_a_known_config():
    table = [
        Route(environment_id=BLOG, hosts=["Blog.Example.COM", "blog.example.com", "www.blog.example.com."],
              upstreams=[], revision=3),
        Route(environment_id=SHOP, hosts=["shop.example.com"], revision=7,
              upstreams=[Upstream(instance_id=INSTANCE_1, address="10.0.0.5:32768"),
                         Upstream(instance_id=INSTANCE_2, address="10.0.0.6:32770")]),
    ]

    assert render(table, PROXY) == {
        "admin": {"listen": "127.0.0.1:8719"},
        "apps": {"http": {"http_port": 8780, "servers": {"ingress": {
            "listen": ["127.0.0.1:8780"],
            "automatic_https": {"disable": True},
            "routes": [
                {"handle": [
                    {"handler": "headers", "response": {"delete": ["Server"]}},
                    {"handler": "subroute", "routes": [{
                        "match": [{"header": {"X-Request-Id": None}}],
                        "handle": [{"handler": "headers",
                                    "request": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}],
                    }]},
                ]},
                {
                    "@id": f"environment-{SHOP}",
                    "match": [{"host": ["shop.example.com"]}],
                    "handle": [
                        {"handler": "request_body", "max_size": 500 * 1024 * 1024},
                        {
                            "handler": "reverse_proxy",
                            "dynamic_upstreams": {
                                "source": "srv",
                                "name": f"_http._tcp.{SHOP}.upstreams.regio.internal.",
                                "refresh": "200ms",
                                "grace_period": "3s",
                                "resolver": {"addresses": ["udp/127.0.0.1:8753"]},
                            },
                            "load_balancing": {
                                "selection_policy": {"policy": "round_robin"},
                                "try_duration": "5s",
                                "try_interval": "250ms",
                                "retry_match": [{"method": ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]}],
                            },
                            "health_checks": {"passive": {"fail_duration": "2s", "max_fails": 1}},
                            "transport": {
                                "protocol": "http",
                                "resolver": {"addresses": ["udp/127.0.0.1:8753"]},
                                "dial_timeout": "5s",
                                "response_header_timeout": "30s",
                                "keep_alive": {"enabled": True, "idle_timeout": "2m", "max_idle_conns_per_host": 128},
                            },
                        },
                    ],
                    "terminal": True,
                },
                {
                    "@id": f"environment-{BLOG}",
                    "match": [{"host": ["blog.example.com", "www.blog.example.com"]}],
                    "handle": [
                        {"handler": "request_body", "max_size": 500 * 1024 * 1024},
                        {"handler": "static_response", "status_code": 503, "headers": PLAIN_TEXT,
                         "body": "503 Service Unavailable: the application has no running instance.\n"},
                    ],
                    "terminal": True,
                },
                {
                    "handle": [{"handler": "static_response", "status_code": 404, "headers": PLAIN_TEXT,
                                "body": "404 Not Found: no application is served at this address.\n"}],
                    "terminal": True,
                },
            ],
            "errors": {"routes": [{"handle": [
                {"handler": "headers", "response": {"delete": ["Server"]}},
                {"handler": "static_response", "status_code": "{http.error.status_code}", "headers": PLAIN_TEXT,
                 "body": "{http.error.status_code} {http.error.status_text}\n"},
            ]}]},
        }}}},
    }


def test_exact_hosts_come_before_wildcards_and_order_is_stable():
    wildcard = Route(environment_id=WILDCARD, hosts=["*.example.com"], upstreams=[], revision=1)
    exact = Route(environment_id=SHOP, hosts=["shop.example.com"], upstreams=[], revision=1)
    blog = Route(environment_id=BLOG, hosts=["blog.example.com"], upstreams=[], revision=1)

    first = render([wildcard, blog, exact], PROXY)
    ids = [r.get("@id") for r in first["apps"]["http"]["servers"]["ingress"]["routes"]]

    assert ids == [None, f"environment-{SHOP}", f"environment-{BLOG}", f"environment-{WILDCARD}", None]
    assert config_hash(first) == config_hash(render([exact, wildcard, blog], PROXY))


def test_an_environment_without_hosts_is_left_out():
    hostless = Route(environment_id=SHOP, hosts=[], upstreams=[], revision=1)

    routes = render([hostless], PROXY)["apps"]["http"]["servers"]["ingress"]["routes"]

    assert len(routes) == 2  # request id and the catch-all 404


def test_the_config_names_no_instance_so_moving_an_environment_to_other_instances_changes_nothing():
    before = Route(environment_id=SHOP, hosts=["shop.example.com"], revision=1,
                   upstreams=[Upstream(instance_id=INSTANCE_1, address="10.0.0.5:32768")])
    after = Route(environment_id=SHOP, hosts=["shop.example.com"], revision=2,
                  upstreams=[Upstream(instance_id=INSTANCE_2, address="10.0.0.6:32770")])

    assert render([before], PROXY) == render([after], PROXY)


HTTPS = ProxySettings(http_listen="127.0.0.1:8780", admin_listen="127.0.0.1:8719", https_listen="127.0.0.1:8743")
SHOP_ROUTE = dict(environment_id=SHOP, hosts=["shop.example.com", "shop.regio.example"], revision=1,
                  upstreams=[Upstream(instance_id=INSTANCE_1, address="10.0.0.5:32768")],
                  redirect_hosts=["old-shop.example.com"])


def _server_routes(config: dict, server: str) -> list[dict]:
    return config["apps"]["http"]["servers"][server]["routes"]


def _location(route: dict) -> tuple[int, str]:
    (handler,) = route["handle"]
    assert handler["handler"] == "static_response"
    return handler["status_code"], handler["headers"]["Location"][0]


def test_redirect_domains_answer_301_to_the_primary_on_the_scheme_and_port_they_came_by():
    config = render([Route(**SHOP_ROUTE)], HTTPS)

    plain, tls = _server_routes(config, "ingress")[1], _server_routes(config, "ingress-tls")[1]
    assert plain["match"] == tls["match"] == [{"host": ["old-shop.example.com"]}]
    assert _location(plain) == (301, "http://shop.example.com:8780{http.request.uri}")
    assert _location(tls) == (301, "https://shop.example.com:8743{http.request.uri}")
    # On the usual ports no port is written.
    usual = ProxySettings(http_listen="0.0.0.0:80", admin_listen="127.0.0.1:8719", https_listen="0.0.0.0:443")
    assert _location(_server_routes(render([Route(**SHOP_ROUTE)], usual), "ingress")[1])[1] == \
        "http://shop.example.com{http.request.uri}"


def test_an_environment_asking_for_https_is_redirected_there_from_plain_http_only():
    config = render([Route(**SHOP_ROUTE, https_redirect=True)], HTTPS)

    redirect, served = _server_routes(config, "ingress")[1:3]
    assert _location(redirect) == (301, "https://shop.example.com:8743{http.request.uri}")
    assert served["match"] == [{"host": ["shop.example.com", "shop.regio.example"]}]
    assert _location(served) == (308, "https://{http.request.host}:8743{http.request.uri}")
    tls_served = _server_routes(config, "ingress-tls")[2]
    assert tls_served["handle"][1]["handler"] == "reverse_proxy"


def test_every_routed_domain_gets_a_certificate_from_the_regions_issuer():
    config = render([Route(**SHOP_ROUTE)], HTTPS)

    assert config["apps"]["tls"]["certificates"] == {
        "automate": ["old-shop.example.com", "shop.example.com", "shop.regio.example"]}
    assert config["apps"]["tls"]["automation"]["policies"] == [{"issuers": [{"module": "internal"}]}]
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    assert config["apps"]["http"]["servers"]["ingress-tls"]["tls_connection_policies"] == [{}]

    acme = ProxySettings(http_listen="0.0.0.0:80", admin_listen="127.0.0.1:8719", https_listen="0.0.0.0:443",
                         tls_issuer="acme", acme_email="ops@example.com")
    assert render([Route(**SHOP_ROUTE)], acme)["apps"]["tls"]["automation"]["policies"] == [
        {"issuers": [{"module": "acme", "email": "ops@example.com"}]}]
    assert "tls" not in render([Route(**SHOP_ROUTE)], PROXY)["apps"]  # no HTTPS listener, no certificates


def test_a_host_cannot_be_both_served_and_redirected():
    with pytest.raises(ValidationError):
        Route(**{**SHOP_ROUTE, "redirect_hosts": ["Shop.Example.com"]})
    with pytest.raises(ValidationError):
        Route(**{**SHOP_ROUTE, "hosts": []})
