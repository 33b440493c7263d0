"""The signed-in user's account: changing their password, which also signs out every other
browser of theirs (whoever knew the old password is out at once)."""
from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlalchemy import delete

from regio_common.app import SessionDep

from ...db.models import WebSession
from ..deps import WebAuditDep, WebCallerDep
from ..passwords import MIN_LENGTH, check_new_password, hash_password_async, verify_password_async
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)


def _page(request: Request, web, error: str | None = None, changed: bool = False, status_code: int = 200):
    return render(request, "account.html", web, error=error, changed=changed, min_length=MIN_LENGTH,
                  status_code=status_code)


@router.get("/account")
async def account_page(request: Request, web: WebCallerDep):
    return _page(request, web)


@router.post("/account/password")
async def change_password(request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                          current: Annotated[str, Form(max_length=1024)],
                          new: Annotated[str, Form(max_length=1024)], repeated: Annotated[str, Form(max_length=1024)]):
    user = web.caller.user
    refusal = None
    if not await verify_password_async(current, user.password_hash):
        refusal = "The current password is wrong."
    elif new != repeated:
        refusal = "The new password and its repetition differ."
    else:
        try:
            check_new_password(new)
        except ValueError as e:
            refusal = str(e)
    if refusal is not None:
        # Recorded too: a session trying passwords is worth an organisation admin's attention.
        audit.record(None, "user.password_change_refused", "user", user.id,
                     f"{user.email} was refused a password change: {refusal}", {})
        return _page(request, web, refusal, status_code=400)
    user.password_hash = await hash_password_async(new)
    ended = await session.execute(delete(WebSession).where(WebSession.user_id == user.id,
                                                            WebSession.id != web.session.id))
    audit.record(None, "user.password_change", "user", user.id,
                 f"{user.email} changed their password; {ended.rowcount} other session(s) ended", {})
    return _page(request, web, changed=True)
