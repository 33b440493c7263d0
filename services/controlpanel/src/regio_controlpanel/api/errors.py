"""Every error leaves as Divio's shapes: ``{"<field>": ["…"]}``, ``{"non_field_errors": […]}``
or ``{"detail": "…"}``, never a 500 for bad input."""
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from ..domain.errors import ApiError


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "non_field_errors"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body: dict[str, list[str]] = {}
        for error in exc.errors():
            message = error["msg"]
            if error["type"] == "json_invalid":
                body.setdefault("non_field_errors", []).append("The request body is not valid JSON.")
                continue
            if error["type"] == "missing":
                message = "This field is required."
            elif error["type"] == "extra_forbidden":
                message = "Unknown field."
            body.setdefault(_field(tuple(error["loc"])), []).append(message)
        return JSONResponse(body, status_code=400)

    @app.exception_handler(DBAPIError)
    async def data_exception(request: Request, exc: DBAPIError) -> JSONResponse:
        # SQLSTATE class 22 ("data exception": a NUL character, a number out of range …)
        # is bad input that got past validation: the caller's mistake, not a server error.
        if str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
            return JSONResponse({"non_field_errors": ["A value in the request cannot be stored or compared: "
                                                      "remove NUL characters and out-of-range numbers."]},
                                status_code=400)
        raise exc

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
