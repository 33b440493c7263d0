"""Where a request goes by its host and scheme, and what the DNS responder tells Caddy for it."""
import struct
from uuid import UUID

import pytest
from pydantic import ValidationError

from regio_common.messages import Upstream
from regio_ingress.dns.responder import answer
from regio_ingress.dns.table import UpstreamTable
from regio_ingress.routes import Route
from regio_ingress.routes.destination import EdgeAnswer, PublicPorts, destination
from regio_ingress.routes.host_index import HostIndex

SHOP = UUID("00000000-0000-0000-0000-00000000000a")
BLOG = UUID("00000000-0000-0000-0000-00000000000b")
WILDCARD = UUID("00000000-0000-0000-0000-000000000001")
INSTANCE = UUID("10000000-0000-0000-0000-000000000001")
LOCAL = PublicPorts(http=8780, https=8743)
SHOP_ROUTE = dict(environment_id=SHOP, hosts=["shop.example.com", "shop.regio.example"], revision=1,
                  upstreams=[Upstream(instance_id=INSTANCE, address="10.0.0.5:32768")],
                  redirect_hosts=["old-shop.example.com"])
EDGE = (("127-0-0-1.addr.upstreams.regio.internal", 8755),)


def where(routes: list[Route], host: str, scheme: str = "http", ports: PublicPorts = LOCAL):
    return destination(HostIndex(routes), host, scheme, ports)


def test_served_hosts_go_to_their_instances_in_any_case_and_with_a_port():
    shop = Route(**SHOP_ROUTE)
    assert where([shop], "shop.example.com") is shop
    assert where([shop], "Shop.Regio.Example:8780", "https") is shop


def test_unknown_hosts_and_environments_without_instances_are_answered_by_the_edge():
    blog = Route(environment_id=BLOG, hosts=["blog.example.com"], upstreams=[], revision=1)
    assert where([blog], "nobody.example.com") == EdgeAnswer(
        404, body="404 Not Found: no application is served at this address.\n")
    assert where([blog], "blog.example.com").status == 503


def test_redirect_domains_answer_301_to_the_primary_on_the_scheme_and_port_they_came_by():
    shop = Route(**SHOP_ROUTE)
    assert where([shop], "old-shop.example.com") == EdgeAnswer(301, location="http://shop.example.com:8780")
    assert where([shop], "old-shop.example.com", "https").location == "https://shop.example.com:8743"
    # On the usual ports no port is written.
    assert where([shop], "old-shop.example.com", ports=PublicPorts(80, 443)).location == "http://shop.example.com"


def test_an_environment_asking_for_https_is_redirected_there_from_plain_http_only():
    shop = Route(**SHOP_ROUTE, https_redirect=True)
    assert where([shop], "shop.regio.example:8780") == EdgeAnswer(308, location="https://shop.regio.example:8743")
    assert where([shop], "shop.regio.example", "https") is shop
    assert where([shop], "old-shop.example.com").location == "https://shop.example.com:8743"  # one hop
    # A region without HTTPS serves it over plain HTTP.
    assert where([shop], "shop.regio.example", ports=PublicPorts(8780, None)) is shop


def test_exact_hosts_come_before_wildcards():
    wildcard = Route(environment_id=WILDCARD, hosts=["*.example.com"], revision=1,
                     upstreams=[Upstream(instance_id=INSTANCE, address="10.0.0.9:32768")])
    shop = Route(**SHOP_ROUTE)
    assert where([wildcard, shop], "shop.example.com") is shop
    assert where([wildcard, shop], "other.example.com") is wildcard
    assert where([wildcard, shop], "a.b.example.com").status == 404  # a wildcard covers one label


def test_the_dns_table_answers_a_hosts_instances_or_the_edge():
    now = [100.0]
    table = UpstreamTable(refresh=0.2, grace=3.0, edge="127.0.0.1:8755", ports=LOCAL, clock=lambda: now[0])
    table.replace([Route(**SHOP_ROUTE, https_redirect=True)])
    zone = "hosts.upstreams.regio.internal."

    assert table.lookup(f"shop.example.com.https.{zone}") == (("10-0-0-5.addr.upstreams.regio.internal", 32768),)
    assert table.lookup(f"shop.example.com.http.{zone}") == EDGE  # redirected to HTTPS
    assert table.lookup(f"old-shop.example.com.https.{zone}") == EDGE
    assert table.lookup(f"nobody.example.com.https.{zone}") == EDGE  # never empty: Caddy would keep old answers
    assert table.lookup("shop.example.com.") is None  # not the zone's


def test_a_change_is_settled_once_caddys_cached_answers_have_expired():
    now = [100.0]
    table = UpstreamTable(refresh=0.2, grace=3.0, edge="127.0.0.1:8755", ports=LOCAL, clock=lambda: now[0])
    now[0] = 200.0  # long after the responder started
    shop = Route(**SHOP_ROUTE)
    table.replace([shop])
    assert table.settled_at(SHOP) == pytest.approx(200.2)

    now[0] = 300.0
    table.replace([shop.model_copy(update={"revision": 2})])  # a new revision answering the same
    assert table.settled_at(SHOP) <= 300.0
    table.replace([shop.model_copy(update={"revision": 3, "redirect_hosts": []})])
    assert table.settled_at(SHOP) == pytest.approx(300.2)


def test_a_host_cannot_be_both_served_and_redirected():
    with pytest.raises(ValidationError):
        Route(**{**SHOP_ROUTE, "redirect_hosts": ["Shop.Example.com"]})
    with pytest.raises(ValidationError):
        Route(**{**SHOP_ROUTE, "hosts": []})


def _srv_query(name: str) -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 33, 1)


def test_a_starting_ingress_fails_lookups_until_it_has_read_its_table():
    """Answering "unknown host" then would send live sites to the edge's 404; a failed lookup makes
    Caddy keep the instances it had."""
    table = UpstreamTable(refresh=0.2, grace=3.0, edge="127.0.0.1:8755", ports=LOCAL)
    query = _srv_query("shop.example.com.https.hosts.upstreams.regio.internal.")

    assert answer(table, query)[3] & 0x0F == 2  # SERVFAIL
    table.replace([Route(**SHOP_ROUTE)])
    reply = answer(table, query)
    assert reply[3] & 0x0F == 0 and struct.unpack("!H", reply[6:8]) == (1,)  # one SRV record
