"""Every error leaves as Divio's shapes: ``{"<field>": ["…"]}``, ``{"non_field_errors": […]}``
or ``{"detail": "…"}``, never a 500 for bad input."""
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, RootModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from ..domain.errors import ApiError


class FieldErrors(RootModel[dict[str, list[str]]]):
    """``{"<field>": ["…"]}``, or ``{"non_field_errors": ["…"]}`` for the request as a whole."""


class Detail(BaseModel):
    detail: str


ERROR_RESPONSES = {
    400: {"model": FieldErrors, "description": "Bad input: each field named with its reasons."},
    401: {"model": Detail, "description": "No valid API token."},
    403: {"model": Detail, "description": "The caller's role does not allow this."},
    404: {"model": Detail, "description": "Not found, or not visible to the caller."},
}
CONFLICT_RESPONSE = {409: {"model": FieldErrors, "description": "Conflicts with an existing object."}}


def document_errors(app: FastAPI) -> None:
    """Validation errors leave as 400 (above), never FastAPI's 422: drop what it documents for them."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


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
        if exc.status_code == 400:  # e.g. a body that is not UTF-8: the request as a whole is bad
            return JSONResponse({"non_field_errors": [str(exc.detail)]}, status_code=400, headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
