"""A browser-like client for the web Control Panel's tests: signs in through the form and
sends every form with the CSRF token of the page it came from."""
import re
import uuid

import httpx

from regio_controlpanel.web.accounts import set_password

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}"
    return found.group(1)


class Browser:
    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/web/login")
        return await self.client.post("/web/login", data={"email": email, "password": password,
                                                          "csrf_token": csrf_of(page), "next": "/web/"})

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def submit(self, page_path: str, action: str, data: dict) -> httpx.Response:
        """Opens the page and posts one of its forms, as a person would."""
        page = await self.client.get(page_path)
        assert page.status_code == 200, page.text
        return await self.client.post(action, data={**data, "csrf_token": csrf_of(page)})


async def new_user(settings, email: str | None = None) -> str:
    email = email or f"web-{uuid.uuid4().hex[:6]}@example.test"
    await set_password(settings, email, PASSWORD)
    return email
