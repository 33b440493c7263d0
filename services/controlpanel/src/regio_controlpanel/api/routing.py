"""Routes served with and without the trailing slash (the divio client asks for both), and
the operation ids they carry in the OpenAPI document."""
from fastapi import APIRouter
from fastapi.routing import APIRoute

from .errors import CONFLICT_RESPONSE, ERROR_RESPONSES


def operation_id(route: APIRoute) -> str:
    """The handler's name (``create_deployment``), not FastAPI's name+path+method: generated
    clients name their functions after it, so it must stay short and change only with the handler."""
    return route.name


class Router(APIRouter):
    def __init__(self, **kwargs):
        super().__init__(responses=ERROR_RESPONSES, **kwargs)

    def api_route(self, path: str, *, include_in_schema: bool = True, **kwargs):
        if set(kwargs.get("methods") or ()) & {"POST", "PATCH", "PUT"}:
            kwargs["responses"] = {**CONFLICT_RESPONSE, **(kwargs.get("responses") or {})}
        add = super().api_route
        alternate = path[:-1] if path.endswith("/") else path + "/"

        def decorator(func):
            add(alternate, include_in_schema=False, **kwargs)(func)
            return add(path, include_in_schema=include_in_schema, **kwargs)(func)

        return decorator
