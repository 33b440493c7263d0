"""The controller's full route state, taken every interval, and the ingress's own API."""
import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import httpx
import pytest

from regio_ingress.routes import Route


class _ControllerHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.tokens.add(self.headers.get("X-Regio-Service-Token"))
        if self.path != "/internal/v1/routes" or self.headers.get("X-Regio-Service-Token") != server.token:
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps([route if isinstance(route, dict) else route.model_dump(mode="json")
                           for route in server.routes]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def controller(settings):
    """The controller's internal route API, answering with whatever ``routes`` holds."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ControllerHandler)
    server.daemon_threads = True
    server.token = settings.service_token
    server.tokens = set()
    server.routes = []
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_the_controllers_full_state_wins(seed, ingress, instance, caddy, eventually, controller):
    gone, kept, stale, new, odd = (instance(name) for name in ("gone", "kept", "stale", "new", "odd"))
    kept_environment, odd_environment = uuid4(), uuid4()
    await seed(
        Route(environment_id=uuid4(), hosts=["gone.example.com"], upstreams=[gone.upstream], revision=1),
        Route(environment_id=kept_environment, hosts=["kept.example.com"], upstreams=[kept.upstream], revision=3),
        Route(environment_id=odd_environment, hosts=["odd.example.com"], upstreams=[odd.upstream], revision=1),
    )
    controller.routes = [
        # Older than what the ingress holds (the event for revision 3 overtook this list): ignored.
        Route(environment_id=kept_environment, hosts=["kept.example.com"], upstreams=[stale.upstream], revision=2),
        Route(environment_id=uuid4(), hosts=["new.example.com"], upstreams=[new.upstream], revision=1),
        # A host Caddy would read as a placeholder matching every request: refused, the held route stays.
        {"environment_id": str(odd_environment), "hosts": ["{http.request.host}"], "revision": 2,
         "upstreams": [{"instance_id": str(stale.id), "address": stale.address}]},
    ]

    async def removed() -> bool:
        try:
            return (await caddy.get("gone.example.com")).status_code == 404
        except httpx.HTTPError:  # a connection cut by the load that removes it
            return False

    async with ingress(controller_url=controller.url):
        await eventually(lambda: caddy.serves("new.example.com", "new"), what="missed route added")
        await eventually(removed, what="absent environment removed")
        assert await caddy.answer_from("kept.example.com") == "kept"
        assert await caddy.answer_from("odd.example.com") == "odd"
        assert (await caddy.get("anything.example.com")).status_code == 404
        assert controller.tokens == {"ingress-test-token"}

        controller.shutdown()  # the controller goes away: the last table keeps serving
        controller.server_close()
        await eventually(lambda: caddy.serves("kept.example.com", "kept"))
        for _ in range(3):
            await asyncio.sleep(0.5)
            assert await caddy.answer_from("new.example.com") == "new"
            assert await caddy.answer_from("kept.example.com") == "kept"


async def test_the_route_table_api_answers_services_only(seed, ingress, instance, api, eventually):
    shop = instance("shop")
    environment = uuid4()
    await seed(Route(environment_id=environment, hosts=["Shop.example.com"], upstreams=[shop.upstream], revision=2))

    async with ingress() as app:
        async with api(app, token=None) as anonymous, api(app, token="wrong") as impostor, api(app) as service:
            assert (await anonymous.get("/internal/v1/routes")).status_code == 401
            assert (await impostor.get("/internal/v1/routes")).status_code == 401

            async def applied() -> bool:
                [route] = (await service.get("/internal/v1/routes")).json()
                return route["applied_revision"] == 2

            await eventually(applied)
            assert (await service.get("/internal/v1/routes")).json() == [{
                "environment_id": str(environment),
                "hosts": ["shop.example.com"],
                "upstreams": [{"instance_id": str(shop.id), "address": shop.address}],
                "revision": 2,
                "redirect_hosts": [],
                "https_redirect": False,
                "held": False,
                "applied_revision": 2,
            }]
