"""Routes served with and without the trailing slash (the divio client asks for both)."""
from fastapi import APIRouter


class Router(APIRouter):
    def api_route(self, path: str, *, include_in_schema: bool = True, **kwargs):
        add = super().api_route
        alternate = path[:-1] if path.endswith("/") else path + "/"

        def decorator(func):
            add(alternate, include_in_schema=False, **kwargs)(func)
            return add(path, include_in_schema=include_in_schema, **kwargs)(func)

        return decorator
