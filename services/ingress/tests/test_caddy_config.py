"""The Caddy config, checked as data: the same for every route table."""
from regio_ingress.caddy.config import ProxySettings, render

PROXY = ProxySettings(http_listen="127.0.0.1:8780", admin_listen="127.0.0.1:8719")
PLAIN_TEXT = {"Content-Type": ["text/plain; charset=utf-8"]}


def test_the_config_is_a_catch_all_that_looks_each_request_up_by_its_host():
    assert render(PROXY) == {
        "admin": {"listen": "127.0.0.1:8719"},
        "apps": {"http": {"http_port": 8780, "servers": {"ingress": {
            "listen": ["127.0.0.1:8780"],
            "automatic_https": {"disable": True},
            "routes": [
                {"handle": [
                    {"handler": "headers", "response": {"delete": ["Server"]}},
                    {"handler": "headers", "response": {"delete": ["Via"], "deferred": True}},
                    {"handler": "subroute", "routes": [{
                        "match": [{"header": {"X-Request-Id": None}}],
                        "handle": [{"handler": "headers",
                                    "request": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}],
                    }]},
                    {"handler": "log_append", "key": "request_id", "value": "{http.request.header.X-Request-Id}"},
                ]},
                {
                    "match": [{"not": [{"vars_regexp": {"{http.request.host}": {
                        "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"}}}]}],
                    "handle": [{"handler": "static_response", "status_code": 404, "headers": PLAIN_TEXT,
                                "body": "404 Not Found: no application is served at this address.\n"}],
                    "terminal": True,
                },
                {
                    "handle": [
                        {"handler": "request_body", "max_size": 500 * 1024 * 1024},
                        {
                            "handler": "reverse_proxy",
                            "dynamic_upstreams": {
                                "source": "srv",
                                "name": "{http.request.host}.{http.request.scheme}.hosts.upstreams.regio.internal.",
                                "refresh": "200ms",
                                "grace_period": "3s",
                                "resolver": {"addresses": ["udp/127.0.0.1:8753"]},
                            },
                            "load_balancing": {
                                "selection_policy": {"policy": "round_robin"},
                                "try_duration": "30s",
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
            ],
            "errors": {"routes": [{"handle": [
                {"handler": "headers", "response": {"delete": ["Server"]}},
                {"handler": "static_response", "status_code": "{http.error.status_code}", "headers": PLAIN_TEXT,
                 "body": "{http.error.status_code} {http.error.status_text}\n"},
            ]}]},
        }}}},
    }



HTTPS = ProxySettings(http_listen="127.0.0.1:8780", admin_listen="127.0.0.1:8719", https_listen="127.0.0.1:8743")


def test_certificates_are_issued_on_demand_by_the_regions_issuer_for_hosts_the_edge_confirms():
    tls = render(HTTPS)["apps"]["tls"]

    assert tls["automation"] == {
        "policies": [{"issuers": [{"module": "internal"}], "on_demand": True}],
        "on_demand": {"permission": {"module": "http", "endpoint": "http://127.0.0.1:8755/certificate-permission"}},
    }
    assert render(HTTPS)["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    assert render(HTTPS)["apps"]["http"]["servers"]["ingress-tls"]["tls_connection_policies"] == [{}]

    acme = ProxySettings(http_listen="0.0.0.0:80", admin_listen="127.0.0.1:8719", https_listen="0.0.0.0:443",
                         tls_issuer="acme", acme_email="ops@example.com")
    assert render(acme)["apps"]["tls"]["automation"]["policies"] == [
        {"issuers": [{"module": "acme", "email": "ops@example.com"}], "on_demand": True}]
    assert "tls" not in render(PROXY)["apps"]  # no HTTPS listener, no certificates


def test_other_regions_ingresses_are_believed_about_their_clients_scheme_only_when_named():
    trusting = ProxySettings(http_listen="127.0.0.1:8780", admin_listen="127.0.0.1:8719",
                             trusted_forwarders=("10.0.0.0/8",))
    server = render(trusting)["apps"]["http"]["servers"]["ingress"]
    assert server["trusted_proxies"] == {"source": "static", "ranges": ["10.0.0.0/8"]}
    assert server["routes"][0] == {"handle": [
        {"handler": "vars", "regio_client_scheme": "{http.request.scheme}"},
        {"handler": "subroute", "routes": [{
            "match": [{"remote_ip": {"ranges": ["10.0.0.0/8"]}, "header": {"X-Forwarded-Proto": ["https"]}}],
            "handle": [{"handler": "vars", "regio_client_scheme": "https"}],
        }]},
    ]}
    [proxy] = [h for h in server["routes"][-1]["handle"] if h["handler"] == "reverse_proxy"]
    assert proxy["dynamic_upstreams"]["name"] == \
        "{http.request.host}.{http.vars.regio_client_scheme}.hosts.upstreams.regio.internal."
    assert "trusted_proxies" not in render(PROXY)["apps"]["http"]["servers"]["ingress"]
