"""Caddy's access log, received by the ingress: each request becomes a line in its
environment's runtime logs and a count in the ingress's metrics."""
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

import nats
import pytest
from prometheus_client import REGISTRY, generate_latest

from regio_common import runtime_logs
from regio_common.runtime_logs import ACCESS
from regio_common.servers import CADDY_HTTP_SOCKET
from regio_ingress.access_log import AccessLog
from regio_ingress.caddy.admin import CaddyAdmin
from regio_ingress.caddy.config import ProxySettings, render
from regio_ingress.dns.responder import DnsResponder
from regio_ingress.dns.table import UpstreamTable
from regio_ingress.edge import EdgeApp, EdgeServer
from regio_ingress.routes.destination import PublicPorts

from .conftest import NatsRelay, free_port, free_udp_port

TS = 1795725718.3975224


def entry(host: str, uri: str = "/x?y=1", method: str = "GET", status: int = 200, duration: float = 0.000104411,
          size: int = 8, request_id: str = "f0e1d2c3", ts: float = TS) -> bytes:
    """An entry as Caddy 2.11 writes it under the ingress's config, one per datagram: without
    headers, with the request id the ingress's config appends."""
    return json.dumps({
        "level": "info", "ts": ts, "logger": "http.log.access", "msg": "handled request",
        "request": {"remote_ip": "127.0.0.1", "remote_port": "34226", "client_ip": "127.0.0.1", "proto": "HTTP/1.1",
                    "method": method, "host": host, "uri": uri},
        "bytes_read": 0, "user_id": "", "duration": duration, "size": size, "status": status,
        "request_id": request_id,
    }).encode()


class Hosts:
    """The caller's map from host names to environments; remembers what it was asked."""

    def __init__(self, **hosts: UUID):
        self.hosts = hosts
        self.asked: list[str] = []

    def __call__(self, host: str) -> UUID | None:
        self.asked.append(host)
        return self.hosts.get(host)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def access_log(nc, region) -> AsyncIterator[Callable]:
    """Start a receiver on a free port; returns it and a function sending one datagram to it."""
    started: list[AccessLog] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def start(environment_of, client=None, **kwargs) -> tuple[AccessLog, Callable[[bytes], None]]:
        receiver = AccessLog(client or nc, region, environment_of, f"127.0.0.1:{free_udp_port()}", **kwargs)
        await receiver.start()
        started.append(receiver)
        return receiver, lambda data: sender.sendto(data, (receiver.host, receiver.port))

    yield start
    sender.close()
    for receiver in started:
        await receiver.stop()


async def lines(js, region: str, environment_id: UUID) -> list[runtime_logs.LogLine]:
    return [line for _, line in await runtime_logs.read(js, runtime_logs.subjects(region, environment_id))]


async def test_a_request_becomes_a_line_in_its_environments_logs(access_log, js, region, eventually):
    shop = uuid4()
    hosts = Hosts(**{"shop.test": shop})
    _, send = await access_log(hosts)

    send(entry("Shop.TEST:8743", uri="/cart?item=3", request_id="5b8e0c1a"))

    await eventually(lambda: _has_lines(js, region, shop, 1), what="the access line")
    [line] = await lines(js, region, shop)
    assert line.message == "GET /cart?item=3 200 0.1ms 8B client=127.0.0.1 request=5b8e0c1a"
    assert line.service == ACCESS == "ingress"
    assert line.instance is None
    assert line.timestamp == datetime.fromtimestamp(TS, UTC)
    assert hosts.asked == ["shop.test"]  # without the port, lowercase


async def _has_lines(js, region, environment_id, count) -> bool:
    return len(await lines(js, region, environment_id)) >= count


async def test_a_request_for_an_unknown_host_reaches_no_environment(access_log, nc, js, region, eventually):
    shop = uuid4()
    _, send = await access_log(Hosts(**{"shop.test": shop}))
    published: list[str] = []

    async def heard(msg) -> None:
        published.append(msg.subject)

    sub = await nc.subscribe(f"region.{region}.logs.>", cb=heard)
    unknown_before = metric("regio_ingress_requests_total", environment="unknown", method="GET", status="4xx")

    send(entry("nobody.test", status=404))
    send(entry("shop.test"))  # published after the first one, had it been published

    await eventually(lambda: _has_lines(js, region, shop, 1), what="the known host's line")
    await nc.flush()
    await sub.unsubscribe()
    assert published == [runtime_logs.access_subject(region, shop)]
    assert metric("regio_ingress_requests_total", environment="unknown", method="GET",
                  status="4xx") == unknown_before + 1


async def test_a_bad_datagram_is_skipped_and_the_next_entry_still_arrives(access_log, js, region, eventually):
    shop = uuid4()
    _, send = await access_log(Hosts(**{"shop.test": shop}))
    invalid_before = metric("regio_ingress_access_log_invalid_total")

    send(b"not json at all")
    send(b'{"level": "info", "msg": "handled request"}')  # JSON, but no request in it
    send(b"\xff\xfe\x00")
    send(entry("shop.test", ts=1e300))  # a time no calendar has
    send(entry("shop.test", uri="/after"))

    await eventually(lambda: _has_lines(js, region, shop, 1), what="the entry after the bad ones")
    assert [line.message.split()[1] for line in await lines(js, region, shop)] == ["/after"]
    assert metric("regio_ingress_access_log_invalid_total") == invalid_before + 4


async def test_requests_are_counted_per_environment(access_log, js, region, eventually):
    shop = uuid4()
    _, send = await access_log(Hosts(**{"shop.test": shop}))

    send(entry("shop.test", status=200, duration=0.0004))
    send(entry("shop.test", status=201, method="POST", duration=0.02))
    send(entry("shop.test", status=503, duration=31.0))
    send(entry("shop.test", status=200, method="BREW", duration=0.0001))  # any token is a method to Go

    await eventually(lambda: _has_lines(js, region, shop, 4), what="all four lines")
    env = str(shop)
    assert metric("regio_ingress_requests_total", environment=env, method="GET", status="2xx") == 1
    assert metric("regio_ingress_requests_total", environment=env, method="POST", status="2xx") == 1
    assert metric("regio_ingress_requests_total", environment=env, method="GET", status="5xx") == 1
    assert metric("regio_ingress_requests_total", environment=env, method="other", status="2xx") == 1
    assert metric("regio_ingress_request_duration_seconds_count", environment=env) == 4
    assert metric("regio_ingress_request_duration_seconds_bucket", environment=env, le="0.0005") == 2
    assert metric("regio_ingress_request_duration_seconds_bucket", environment=env, le="30.0") == 3
    exposed = generate_latest().decode()  # what the ingress's /metrics serves
    assert f'regio_ingress_requests_total{{environment="{env}",method="GET",status="5xx"}} 1.0' in exposed


async def test_while_nats_is_away_the_newest_lines_wait_and_the_oldest_are_dropped(access_log, nats_url, js, region,
                                                                                  eventually):
    relay = NatsRelay(nats_url)
    await relay.open()
    client = await nats.connect(relay.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    try:
        shop = uuid4()
        _, send = await access_log(Hosts(**{"shop.test": shop}), client=client, max_buffered=5)
        dropped_before = metric("regio_ingress_access_log_dropped_total")

        await relay.cut()
        await eventually(lambda: _is(not client.is_connected), what="the client noticing NATS is away")
        for n in range(1, 9):
            send(entry("shop.test", uri=f"/{n}"))
        await eventually(lambda: _is(metric("regio_ingress_access_log_dropped_total") == dropped_before + 3),
                         what="the three oldest lines dropped")

        await relay.open()
        await eventually(lambda: _has_lines(js, region, shop, 5), what="the kept lines, once NATS is back")
        assert [line.message.split()[1] for line in await lines(js, region, shop)] == ["/4", "/5", "/6", "/7", "/8"]
    finally:
        await client.close()
        await relay.cut()


async def _is(value: bool) -> bool:
    return value


async def test_real_caddy_entries_are_understood(access_log, caddy, js, region, eventually):
    """The entries Caddy writes with the ingress's own config: the request id it sets, the 404 of
    a host it does not serve (mapped to an environment here, to see its line)."""
    shop = uuid4()
    receiver, _ = await access_log(Hosts(**{"shop.test": shop}))
    # An empty table: the DNS responder sends the request to the edge, which answers 404.
    edge_listen = f"127.0.0.1:{free_port()}"
    table = UpstreamTable(0.2, 3, edge_listen, PublicPorts(caddy.http_port, None))
    table.replace([])
    edge, responder = EdgeServer(EdgeApp(table), edge_listen), DnsResponder(table, f"127.0.0.1:{free_udp_port()}")
    await edge.start()
    await responder.start()
    try:
        admin = CaddyAdmin(caddy.admin_socket)
        try:
            await admin.load(render(ProxySettings(
                http_listen=caddy.http_listen, http_socket=CADDY_HTTP_SOCKET, admin_listen=caddy.admin_listen,
                access_log_address=f"{receiver.host}:{receiver.port}", edge_address=edge_listen,
                upstreams_resolver=f"udp/{responder.host}:{responder.port}")))
        finally:
            await admin.close()
        status_before = metric("regio_ingress_requests_total", environment=str(shop), method="GET", status="4xx")

        response = await caddy.get("shop.test", "/hello?x=1")
        await caddy.get("shop.test", "/again", headers={"X-Request-Id": "from-the-client"})

        assert response.status_code == 404
        await eventually(lambda: _has_lines(js, region, shop, 2), what="Caddy's entries as lines")
        first, second = await lines(js, region, shop)
        method, uri, status, duration, size, client, request = first.message.split()
        assert (method, uri, status, client) == ("GET", "/hello?x=1", "404", "client=127.0.0.1")
        assert duration.endswith("ms") and size == f"{len(response.content)}B"
        UUID(request.removeprefix("request="))  # the id Caddy gave the request, as the application sees it
        assert second.message.endswith(" request=from-the-client")  # one the client sent is kept
        assert metric("regio_ingress_requests_total", environment=str(shop), method="GET",
                      status="4xx") == status_before + 2
    finally:
        responder.stop()
        await edge.stop()
