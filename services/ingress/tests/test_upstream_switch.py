"""Moving an environment to other instances, as every deployment does, without reloading Caddy:
its config stays as it is and no request is lost while Caddy looks the new instances up."""
import asyncio
from uuid import uuid4

import httpx

HOST = "shop.example.com"


async def running_config(caddy) -> dict:
    async with caddy.admin_client() as admin:
        return (await admin.get("/config/")).json()


async def test_switching_instances_leaves_caddys_config_as_it_is_and_sends_requests_to_the_new_ones(
        ingress, instance, caddy, region_bus):
    environment = uuid4()
    blue, green = instance("blue"), instance("green")

    async with ingress():
        await region_bus.announce(environment, [HOST], [blue], revision=1)
        assert (await region_bus.next_applied()).revision == 1
        assert await caddy.answer_from(HOST) == "blue"
        before = await running_config(caddy)

        await region_bus.announce(environment, [HOST], [green], revision=2)
        assert (await region_bus.next_applied()).revision == 2

        # Applied means every request from now on goes to the new instance.
        assert [await caddy.answer_from(HOST) for _ in range(5)] == ["green"] * 5
        assert await running_config(caddy) == before


async def test_a_client_loses_no_request_across_twenty_switches(ingress, instance, caddy, region_bus):
    environment = uuid4()
    blue, green = instance("blue"), instance("green")
    answers: list[str] = []
    failures: list[str] = []
    switching = True

    async def client() -> None:
        while switching:
            # A fresh connection each time: a reloading Caddy would drop the ones it has not accepted yet.
            async with httpx.AsyncClient(base_url=f"http://{caddy.http_listen}", timeout=10) as http:
                try:
                    response = await http.get("/", headers={"Host": HOST})
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                    continue
            if response.status_code == 200:
                answers.append(response.json()["name"])
            else:
                failures.append(f"{response.status_code} {response.text}")

    async with ingress():
        await region_bus.announce(environment, [HOST], [blue], revision=1)
        assert (await region_bus.next_applied()).revision == 1
        requests = asyncio.create_task(client())
        try:
            for revision in range(2, 22):
                await region_bus.announce(environment, [HOST], [green if revision % 2 else blue], revision=revision)
                assert (await region_bus.next_applied()).revision == revision
        finally:
            switching = False
            await requests

    assert failures == []
    assert {"blue", "green"} <= set(answers)


async def test_an_environment_without_instances_answers_503_at_once(ingress, instance, caddy, region_bus):
    environment = uuid4()
    shop = instance("shop")

    async with ingress():
        await region_bus.announce(environment, [HOST], [shop], revision=1)
        assert (await region_bus.next_applied()).revision == 1
        await region_bus.announce(environment, [HOST], [], revision=2)
        assert (await region_bus.next_applied()).revision == 2

        # Under Caddy's 30 s of retries: waiting for instances that are not there would be a hang,
        # not an answer.
        response = await caddy.get(HOST, timeout=4)
        assert response.status_code == 503
        assert "no running instance" in response.text

        await region_bus.announce(environment, [HOST], [shop], revision=3)
        assert (await region_bus.next_applied()).revision == 3
        assert await caddy.answer_from(HOST) == "shop"


async def test_caddy_goes_on_serving_the_last_instances_while_the_ingress_is_down(ingress, instance, caddy,
                                                                                  region_bus):
    environment = uuid4()
    shop = instance("shop")
    grace = 0.3

    async with ingress(upstreams_grace_seconds=grace):
        await region_bus.announce(environment, [HOST], [shop], revision=1)
        assert (await region_bus.next_applied()).revision == 1
        assert await caddy.answer_from(HOST) == "shop"

    # Several grace periods without answers: each failed lookup keeps the instances Caddy had.
    answers = []
    for _ in range(10):
        answers.append(await caddy.answer_from(HOST))
        await asyncio.sleep(grace / 2)
    assert answers == ["shop"] * 10
