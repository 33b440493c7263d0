"""The parts every service's FastAPI app has: health, readiness, metrics, request ids,
and the request's database transaction."""
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

REQUESTS = Counter("regio_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"])
LATENCY = Histogram("regio_http_request_seconds", "HTTP request latency", ["service", "method", "route"])

ReadinessCheck = Callable[[], Awaitable[None]]


def add_platform_routes(app: FastAPI, service: str, checks: dict[str, ReadinessCheck]) -> None:
    """/healthz says the process runs; /readyz that its dependencies answer; /metrics for Prometheus."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        failed = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as e:  # a readiness probe reports, it does not raise
                failed[name] = str(e) or type(e).__name__
        if failed:
            return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
        return JSONResponse({"status": "ok", "service": service})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        LATENCY.labels(service, request.method, path).observe(time.perf_counter() - started)
        REQUESTS.labels(service, request.method, path, str(response.status_code)).inc()
        response.headers["X-Request-Id"] = request_id
        return response


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back if it
    raises. Expects the service's Runtime at ``app.state.runtime``."""
    async with request.app.state.runtime.sessions() as session, session.begin():
        yield session


# Function scope: the transaction commits before the response is sent, so a client that
# got a 201 finds the object on its next request, and a failing commit is an error response.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
