"""Errors on web pages leave as pages, not as the API's JSON: a missing session goes to the
sign-in page, a refused CSRF token is a 403, and the service layer's errors (the same as the
API's: not found, not allowed, bad input) are shown with their message."""
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse

from ..domain.errors import ApiError
from .deps import CsrfRefused, SignInRequired
from .templating import render

PREFIX = "/web"


def _is_web(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def install(app: FastAPI) -> None:
    api_error = app.exception_handlers.get(ApiError)
    invalid = app.exception_handlers.get(RequestValidationError)

    async def sign_in_required(request: Request, exc: SignInRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)

    async def csrf_refused(request: Request, exc: CsrfRefused):
        return render(request, "error.html", status_code=403, title="Form expired",
                      messages=["This form was not sent from this session's page. Reload the page and try again."])

    async def web_api_error(request: Request, exc: ApiError):
        if not _is_web(request):
            return await api_error(request, exc)
        titles = {404: "Not found", 403: "Not allowed", 409: "Conflict"}
        body = exc.body()
        messages = [body["detail"]] if "detail" in body else [
            f"{'' if field == 'non_field_errors' else field + ': '}{m}" for field, ms in body.items() for m in ms]
        return render(request, "error.html", status_code=exc.status_code,
                      title=titles.get(exc.status_code, "That did not work"), messages=messages)

    async def web_invalid(request: Request, exc: RequestValidationError):
        if not _is_web(request):
            return await invalid(request, exc)
        messages = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'form'}: {e['msg']}" for e in exc.errors()]
        return render(request, "error.html", status_code=400, title="Check the form", messages=messages)

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(ApiError, web_api_error)
    app.add_exception_handler(RequestValidationError, web_invalid)
