"""What a visitor of an environment's domains sees through the real Caddy: redirect domains,
HTTPS with the region's certificate authority, the redirect to HTTPS an environment may ask
for, and Divio's limits (a slow application is a 504, a too large body a 413)."""
import asyncio
import ssl
from uuid import uuid4

import httpx

from regio_ingress.routes import Route


async def root_certificate(caddy) -> str:
    """The root of Caddy's own CA, as the region hands it to whoever should trust its certificates."""
    async with caddy.admin_client() as admin:
        return (await admin.get("/pki/ca/local")).json()["root_certificate"]


async def test_redirect_domains_answer_301_to_the_primary_with_path_and_query(seed, ingress, instance, caddy,
                                                                             eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com", "www.shop.example.com"],
                     redirect_hosts=["old-shop.example.com", "shop.example.net"],
                     upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))
        redirected = await caddy.get("old-shop.example.com", "/cart/items?id=7&sort=new")
        other = await caddy.get("SHOP.example.net", "/")

        assert redirected.status_code == 301
        assert redirected.headers["Location"] == f"http://shop.example.com:{caddy.http_port}/cart/items?id=7&sort=new"
        assert other.status_code == 301 and other.headers["Location"] == f"http://shop.example.com:{caddy.http_port}/"
        assert await caddy.answer_from("www.shop.example.com") == "shop"  # an alias is served, not redirected


async def test_every_domain_is_served_over_https_with_a_certificate_of_the_regions_ca(seed, ingress, instance,
                                                                                   caddy, eventually, tmp_path):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], redirect_hosts=["old-shop.example.com"],
                     upstreams=[shop.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))
        ca = tmp_path / "region-ca.pem"
        ca.write_text(await root_certificate(caddy))

        async def curl(host: str, path: str = "/", *trust: str) -> tuple[int, str]:
            # Not subprocess.run: the ingress under test answers Caddy's lookups on this event loop.
            process = await asyncio.create_subprocess_exec(
                "curl", "-sS", *trust, "--resolve", f"{host}:{caddy.https_port}:127.0.0.1",
                "-w", "\n%{http_code} %{redirect_url}", f"https://{host}:{caddy.https_port}{path}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await process.communicate()
            return process.returncode, out.decode()

        async def certified(host: str) -> bool:  # issued at the host's first handshake
            return (await curl(host, "/", "--cacert", str(ca)))[0] == 0

        await eventually(lambda: certified("shop.example.com"), what="a certificate for shop.example.com")
        code, out = await curl("shop.example.com", "/hello", "--cacert", str(ca))
        body, _, status = out.rpartition("\n")
        assert code == 0 and status.startswith("200") and '"name": "shop"' in body
        assert '"X-Forwarded-Proto": "https"' in body

        await eventually(lambda: certified("old-shop.example.com"), what="a certificate for old-shop.example.com")
        code, out = await curl("old-shop.example.com", "/a?b=c", "--cacert", str(ca))
        assert out.rpartition("\n")[2] == f"301 https://shop.example.com:{caddy.https_port}/a?b=c"

        # A client that does not trust the region's CA is refused the connection.
        assert (await curl("shop.example.com"))[0] != 0
        # A host no environment has gets no certificate: Caddy asks the ingress before issuing one.
        assert (await curl("nobody.example.com", "/", "--cacert", str(ca)))[0] != 0


async def test_an_environment_can_send_plain_http_to_https(seed, ingress, instance, caddy, eventually, tmp_path):
    shop, blog = instance("shop"), instance("blog")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1,
                     https_redirect=True),
               Route(environment_id=uuid4(), hosts=["blog.example.com"], upstreams=[blog.upstream], revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("blog.example.com", "blog"))
        response = await caddy.get("shop.example.com", "/pay?x=1")
        assert response.status_code == 308  # permanent, and a POST stays a POST
        assert response.headers["Location"] == f"https://shop.example.com:{caddy.https_port}/pay?x=1"
        assert await caddy.answer_from("blog.example.com") == "blog"  # the other environment did not ask

        context = ssl.create_default_context(cadata=await root_certificate(caddy))
        async with httpx.AsyncClient(verify=context, timeout=15) as client:
            async def https_shop() -> bool:
                try:
                    r = await client.get(f"https://127.0.0.1:{caddy.https_port}/", headers={"Host": "shop.example.com"},
                                         extensions={"sni_hostname": "shop.example.com"})
                except httpx.HTTPError:
                    return False
                return r.status_code == 200 and r.json()["name"] == "shop"

            await eventually(https_shop, what="shop over https")


async def test_a_slow_application_gets_a_504_and_a_too_large_body_a_413(seed, ingress, instance, caddy, eventually):
    shop = instance("shop")
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[shop.upstream], revision=1))

    async with ingress(read_timeout="1s", max_body_bytes=1024):
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))

        # A POST: a GET that timed out is sent again (it is idempotent) until Caddy's 30 s of
        # retries are over, so with a 1 s read timeout it is answered 504 only after those.
        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=15) as client:
            slow = await client.post("/sleep/3", content=b"x", headers={"Host": "shop.example.com"})
        assert slow.status_code == 504
        assert slow.text == "504 Gateway Timeout\n" and "127.0.0.1" not in slow.text

        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=15) as client:
            small = await client.post("/", content=b"x" * 1024, headers={"Host": "shop.example.com"})
            large = await client.post("/", content=b"x" * 4096, headers={"Host": "shop.example.com"})
        assert small.status_code == 200
        assert large.status_code == 413


async def test_a_request_to_an_instance_that_refuses_connections_is_answered_by_another(seed, ingress, instance,
                                                                                       caddy, eventually):
    shop = instance("shop")
    gone = instance("gone")
    gone.server.shutdown()
    gone.server.server_close()  # its port now refuses connections, as a killed container's does
    await seed(Route(environment_id=uuid4(), hosts=["shop.example.com"], upstreams=[gone.upstream, shop.upstream],
                     revision=1))

    async with ingress():
        await eventually(lambda: caddy.serves("shop.example.com", "shop"))
        async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=15) as client:
            gets = [await client.get("/", headers={"Host": "shop.example.com"}) for _ in range(20)]
            posts = [await client.post("/", content=b"order", headers={"Host": "shop.example.com"})
                     for _ in range(5)]
    # Nothing reached the refusing instance, so even a POST is safe to send to the other one.
    assert [r.status_code for r in gets + posts] == [200] * 25
