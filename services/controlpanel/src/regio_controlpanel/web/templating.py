"""Jinja2 templates (autoescaped) and the page context every template gets."""
from datetime import datetime
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from .deps import WebCaller

TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when


def render(request: Request, name: str, web: WebCaller | None = None, status_code: int = 200, **context):
    """``web``: the signed-in caller, for the navigation and the forms' CSRF token."""
    context |= {"me": web.caller.user if web else None, "csrf_token": web.csrf_token if web else None}
    return templates.TemplateResponse(request, name, context, status_code=status_code)
