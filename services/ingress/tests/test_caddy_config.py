"""The Caddy config rendered from a route table, checked as data."""
from uuid import UUID

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
        "apps": {"http": {"servers": {"ingress": {
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
                            "transport": {
                                "protocol": "http",
                                "resolver": {"addresses": ["udp/127.0.0.1:8753"]},
                                "dial_timeout": "5s",
                                "response_header_timeout": "30s",
                                "keep_alive": {"enabled": True, "idle_timeout": "2m", "max_idle_conns_per_host": 32},
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
