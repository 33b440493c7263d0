"""The internal API: other services read a deployment's build with the service credential."""
from uuid import uuid4


async def test_reading_a_build_needs_the_service_credential(builder):
    url = f"/internal/v1/builds/{uuid4()}"

    assert (await builder.client.get(url)).status_code == 401
    assert (await builder.client.get(url, headers={"X-Regio-Service-Token": "wrong"})).status_code == 401


async def test_an_unknown_deployment_has_no_build(builder):
    response = await builder.build_record(uuid4())

    assert response.status_code == 404


async def test_no_configured_credential_lets_nobody_in(start_builder):
    async with start_builder(service_token="") as builder:
        response = await builder.client.get(f"/internal/v1/builds/{uuid4()}",
                                            headers={"X-Regio-Service-Token": ""})

    assert response.status_code == 401


async def test_health_and_readiness(builder):
    assert (await builder.client.get("/healthz")).json()["service"] == "builder"
    ready = await builder.client.get("/readyz")
    assert ready.status_code == 200, ready.text
