"""What every service's app answers besides its own routes."""
import httpx
from fastapi import FastAPI

from regio_common.app import add_platform_routes


def make_app(ready: bool) -> FastAPI:
    async def database() -> None:
        if not ready:
            raise RuntimeError("connection refused")

    app = FastAPI()
    add_platform_routes(app, "example", {"db": database})

    @app.get("/hello")
    async def hello() -> dict:
        return {"hello": "world"}

    return app


async def test_health_readiness_metrics_and_request_ids():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(ready=True)), base_url="http://t") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok", "service": "example"}
        assert (await c.get("/readyz")).status_code == 200
        hello = await c.get("/hello", headers={"X-Request-Id": "abc123"})
        assert hello.headers["X-Request-Id"] == "abc123"
        assert len((await c.get("/hello")).headers["X-Request-Id"]) == 32
        metrics = await c.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'regio_http_requests_total{method="GET",route="/hello",service="example",status="200"}' in metrics.text


async def test_readiness_names_the_dependency_that_fails():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(ready=False)), base_url="http://t") as c:
        response = await c.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failed"] == {"db": "connection refused"}
        assert (await c.get("/healthz")).status_code == 200
