"""Holding an environment's requests at the ingress during a migration's cut-over, and
forwarding its hosts to another region's ingress, through a real Caddy.

A held route answers Caddy's upstream lookups with an address where nothing listens: Caddy
retries the refused dial (POSTs too: the upstream never saw the request) and looks the
upstreams up again before each try, so a held request waits and goes on when the route is
released. None reaches the old instance meanwhile, none fails."""
import asyncio
import time
from uuid import uuid4

import httpx

from regio_common.messages import RoutesChanged, Upstream

from .conftest import caddy_loaded_once

HOST = "shop.example.com"
HOLD_SECONDS = 2.0


async def announce(region_bus, environment, revision: int, upstreams: list[Upstream], held: bool = False,
                   hosts: list[str] = (HOST,)) -> None:
    message = RoutesChanged(environment_id=environment, hosts=list(hosts), upstreams=upstreams,
                            revision=revision, held=held)
    await region_bus.js.publish(message.subject(region_bus.region), message.model_dump_json().encode(),
                                headers=message.headers())
    # At least once: a restarted ingress may announce an older revision again.
    while (await region_bus.next_applied()).revision < revision:
        pass


async def send(caddy, method: str, body: bytes) -> tuple[float, int, str]:
    """(when it was answered, its status, the answering instance or the body)"""
    async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=30) as http:
        response = await http.request(method, "/", headers={"Host": HOST}, content=body or None)
    answered = time.monotonic()
    try:
        return answered, response.status_code, response.json()["name"]
    except ValueError:
        return answered, response.status_code, response.text


async def test_held_requests_wait_and_go_to_the_new_instances_when_released_none_failing(
        ingress, instance, caddy, region_bus):
    environment = uuid4()
    old, new = instance("old"), instance("new")
    failures: list[str] = []
    answers: list[str] = []
    running = True

    async def steady_client(method: str) -> None:
        # Requests throughout: before, during and after the hold.
        while running:
            try:
                _, status, name = await send(caddy, method, b"x" * 2048 if method == "POST" else b"")
            except httpx.HTTPError as e:
                failures.append(f"{method}: {e!r}")
                continue
            (answers if status == 200 else failures).append(name if status == 200 else f"{method}: {status} {name}")

    async with ingress():
        await announce(region_bus, environment, 1, [old.upstream])
        assert await caddy.answer_from(HOST) == "old"
        steady = [asyncio.create_task(steady_client(m)) for m in ("GET", "POST")]
        await asyncio.sleep(0.3)

        await announce(region_bus, environment, 2, [], held=True)
        held_at = time.monotonic()
        during = [asyncio.create_task(send(caddy, method, b"payload" if method == "POST" else b""))
                  for method in ("GET", "POST", "PUT", "DELETE", "POST", "GET")]
        await asyncio.sleep(HOLD_SECONDS)
        assert not any(task.done() for task in during), "a held request was answered during the hold"

        released_at = time.monotonic()
        await announce(region_bus, environment, 3, [new.upstream])
        results = await asyncio.gather(*during)
        await asyncio.sleep(0.3)
        running = False
        await asyncio.gather(*steady)

    assert failures == []
    assert [(status, name) for _, status, name in results] == [(200, "new")] * len(during)
    # Every request Caddy held went on within a moment of the release (a refresh and a retry's pause).
    assert max(answered for answered, _, _ in results) - released_at < 2.0
    assert {"old", "new"} <= set(answers)
    # None of what was sent during the hold reached the old instance: each answer after the
    # first "new" is "new" (a steady request sent before the hold may still end at "old").
    assert "old" not in answers[answers.index("new"):]
    print(f"held requests waited {released_at - held_at:.2f}s and were answered at most "
          f"{max(a for a, _, _ in results) - released_at:.3f}s after the release was announced")


async def test_a_held_route_survives_an_ingress_restart(ingress, instance, caddy, region_bus):
    environment = uuid4()
    old, new = instance("old"), instance("new")
    async with ingress():
        await announce(region_bus, environment, 1, [old.upstream])
        await announce(region_bus, environment, 2, [], held=True)

    async with ingress():
        waiting = asyncio.create_task(send(caddy, "POST", b"order"))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        await announce(region_bus, environment, 3, [new.upstream])
        _, status, name = await waiting
    assert (status, name) == (200, "new")


async def test_a_forwarded_host_goes_to_the_other_address_with_its_host_header(ingress, instance, caddy,
                                                                              region_bus):
    environment = uuid4()
    old, other_region = instance("old"), instance("other-region-ingress")
    async with ingress():
        await announce(region_bus, environment, 1, [old.upstream])
        await announce(region_bus, environment, 2, [], held=True)
        waiting = asyncio.create_task(send(caddy, "POST", b"order"))
        await asyncio.sleep(0.5)
        # The forward route: the other region's ingress as the one upstream.
        await announce(region_bus, environment, 3, [Upstream(instance_id=uuid4(), address=other_region.address)])
        _, status, name = await waiting
        assert (status, name) == (200, "other-region-ingress")
        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=10) as http:
            response = await http.get("/", headers={"Host": HOST})
    assert response.json()["name"] == "other-region-ingress"
    assert response.json()["headers"]["Host"] == HOST


async def test_a_host_forwarded_to_a_named_address_reaches_it(ingress, instance, caddy, region_bus):
    # Regions name each other's ingresses as their operators configured them: often a host name,
    # which Caddy (dialling through the ingress's own responder) could not resolve by itself.
    environment = uuid4()
    other_region = instance("other-region-ingress")
    async with ingress():
        await announce(region_bus, environment, 1, [Upstream(instance_id=uuid4(),
                                                             address=f"localhost:{other_region.server.server_port}")])
        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=10) as http:
            response = await http.post("/orders", headers={"Host": HOST}, content=b"order")
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["headers"]["Host"]) == ("other-region-ingress", HOST)


async def test_an_https_request_forwarded_by_another_regions_ingress_is_not_redirected_again(
        ingress, instance, caddy, region_bus):
    # The old region forwards over plain HTTP. An environment redirecting HTTP to HTTPS would send
    # its HTTPS clients back there, to be forwarded here again, unless the forwarder is believed.
    environment = uuid4()
    shop = instance("shop")
    message = RoutesChanged(environment_id=environment, hosts=[HOST], upstreams=[shop.upstream], revision=1,
                            https_redirect=True)

    async def get(**headers) -> httpx.Response:
        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=10) as http:
            return await http.get("/cart", headers={"Host": HOST, **headers})

    async with ingress(trusted_forwarders=["127.0.0.0/8"]):
        await region_bus.js.publish(message.subject(region_bus.region), message.model_dump_json().encode(),
                                    headers=message.headers())
        await region_bus.next_applied()
        forwarded = await get(**{"X-Forwarded-Proto": "https"})
        assert forwarded.status_code == 200, forwarded.text
        assert forwarded.json()["headers"]["X-Forwarded-Proto"] == "https"  # the application sees HTTPS too
        assert (await get()).status_code == 308  # plain HTTP of its own is redirected as before

    # Not from a trusted forwarder: a client saying it used HTTPS is not believed.
    async with ingress() as app:
        await caddy_loaded_once(app)
        claimed = await get(**{"X-Forwarded-Proto": "https"})
        assert claimed.status_code == 308
