"""The divio client reads the template list before it creates an application: it is served
(empty: Regio offers no templates), to signed-in callers only."""
import uuid

import httpx


async def test_the_template_list_is_empty_and_a_template_is_not_found(api):
    listed = await api.get("/apps/v3/app-templates/")
    assert listed.status_code == 200
    assert listed.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert (await api.get(f"/apps/v3/app-templates/{uuid.uuid4()}/")).status_code == 404


async def test_templates_need_a_token(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as anonymous:
        assert (await anonymous.get("/apps/v3/app-templates/")).status_code == 401
