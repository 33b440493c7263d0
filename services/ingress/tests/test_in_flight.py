"""Requests in flight per upstream, as the real Caddy counts them, through the ingress's internal
API: the controller stops a drained instance only once nothing is in flight to it, so a
request to an instance the routes just dropped must go on counting until it is answered."""
import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest

from regio_common.messages import Upstream


class _HoldingHandler(BaseHTTPRequestHandler):
    """Answers /hold only once the test releases it; any other path at once."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/hold":
            self.server.release.wait(30)
        body = json.dumps({"name": "old", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HoldingInstance:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _HoldingHandler)
        self.server.daemon_threads = True
        self.server.release = threading.Event()
        self.id = uuid4()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    @property
    def upstream(self) -> Upstream:
        return Upstream(instance_id=self.id, address=self.address)

    def release(self) -> None:
        self.server.release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def holding_instance():
    instance = HoldingInstance()
    yield instance
    instance.close()


async def in_flight(client) -> dict[str, int]:
    response = await client.get("/internal/v1/upstreams")
    assert response.status_code == 200, response.text
    return {u["address"]: u["in_flight"] for u in response.json()}


async def test_a_request_to_an_instance_the_routes_dropped_counts_until_it_is_answered(
        ingress, api, instance, holding_instance, caddy, region_bus, eventually):
    environment = uuid4()
    old, new = holding_instance, instance("new")

    async with ingress() as app, api(app) as client:
        await region_bus.announce(environment, ["shop.example.com"], [old], revision=1)
        assert (await region_bus.next_applied()).revision == 1
        held = asyncio.create_task(caddy.get("shop.example.com", "/hold"))

        async def counted() -> bool:
            return (await in_flight(client)).get(old.address) == 1

        await eventually(counted, what="the held request counted in flight to the old instance")

        await region_bus.announce(environment, ["shop.example.com"], [new], revision=2)
        assert (await region_bus.next_applied()).revision == 2
        assert await caddy.answer_from("shop.example.com") == "new"
        reported = await in_flight(client)
        assert reported[old.address] == 1  # dropped from the routes, its request still counts
        assert reported[new.address] == 0

        old.release()
        answer = await held
        assert answer.status_code == 200 and answer.json() == {"name": "old", "path": "/hold"}

        async def idle() -> bool:
            return (await in_flight(client)).get(old.address, 0) == 0

        await eventually(idle, what="nothing in flight to the old instance once answered")


async def test_the_upstreams_need_the_service_token_and_a_caddy_that_answers(ingress, api, caddy):
    async with ingress() as app:
        async with api(app, token=None) as anonymous, api(app, token="wrong") as impostor:
            assert (await anonymous.get("/internal/v1/upstreams")).status_code == 401
            assert (await impostor.get("/internal/v1/upstreams")).status_code == 401
        async with api(app) as client:
            caddy.stop()
            # Unknown is not idle: an empty list would let a drain stop instances still answering.
            response = await client.get("/internal/v1/upstreams")
            assert response.status_code == 503
            assert "caddy admin unreachable" in response.json()["detail"]
