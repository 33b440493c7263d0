"""Traffic through the real Caddy, configured by the ingress from its route table."""
import time
from uuid import uuid4

import httpx

from regio_ingress.routes import Route


async def test_hosts_route_to_their_environments_as_soon_as_the_ingress_starts(seed, ingress, instance, caddy,
                                                                                 eventually):
    shop, blog = instance("shop"), instance("blog")
    await seed(
        Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1),
        Route(environment_id=uuid4(), hosts=["Blog.Example.com", "www.blog.example.com"],
              upstreams=[blog.upstream], revision=4),
    )

    started = time.monotonic()
    async with ingress():  # no controller answers here: the routes come from the stored table
        # How soon is a figure, not an assertion (a loaded machine is slow): printed for the record.
        await eventually(lambda: caddy.serves("shop.example.com", "shop"), timeout=30, what="shop routed")
        print(f"routes served {time.monotonic() - started:.2f}s after the ingress started")

        assert await caddy.answer_from("blog.example.com") == "blog"
        assert await caddy.answer_from("WWW.BLOG.EXAMPLE.COM") == "blog"
        assert await caddy.answer_from("shop.example.com") == "shop"


async def test_requests_reach_the_application_with_forwarding_headers_and_a_request_id(seed, ingress, instance,
                                                                                        caddy, eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))

        seen = (await caddy.get("shop.example.com", headers={"X-Forwarded-For": "6.6.6.6"})).json()["headers"]
        given = (await caddy.get("shop.example.com", headers={"X-Request-Id": "from-the-client"})).json()["headers"]

    assert seen["X-Forwarded-Host"] == "shop.example.com"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-For"] == "127.0.0.1"  # what a client claims is not trusted
    assert len(seen["X-Request-Id"]) == 36  # a fresh uuid
    assert given["X-Request-Id"] == "from-the-client"


async def test_instances_of_an_environment_take_turns(seed, ingress, instance, caddy, eventually):
    first, second = instance("first"), instance("second")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"],
                     upstreams=[first.upstream, second.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "first"))
        answers = [await caddy.answer_from("shop.example.com") for _ in range(6)]

    assert answers.count("first") == 3 and answers.count("second") == 3
    assert all(a != b for a, b in zip(answers, answers[1:]))


async def test_an_unknown_host_gets_a_plain_404_that_tells_nothing_about_the_platform(seed, ingress, instance,
                                                                                      caddy, eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))
        response = await caddy.get("nobody.example.com", "/admin/config")

    assert response.status_code == 404
    assert response.text == "404 Not Found: no application is served at this address.\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "server" not in response.headers
    assert not any("caddy" in value.lower() for value in response.headers.values())


async def test_an_environment_without_instances_keeps_its_hosts_and_answers_503(seed, ingress, caddy, eventually):
    await seed(Route(environment_id=uuid4(), hosts=["idle.example.com"], upstreams=[], revision=2))

    async with ingress():
        async def unavailable() -> bool:
            try:
                return (await caddy.get("idle.example.com")).status_code == 503
            except httpx.HTTPError:  # a connection cut by the load that brings the table in
                return False

        await eventually(unavailable)
        response = await caddy.get("idle.example.com")
        assert (await caddy.get("other.example.com")).status_code == 404

    assert response.text == "503 Service Unavailable: the application has no running instance.\n"
