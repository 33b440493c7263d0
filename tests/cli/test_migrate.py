"""`regio migrate APP --to REGION`: asks the running region's control panel for a migration as
the admin and exits 1, with the reason, when there is none to follow (a full migration is
the e2e tests', tests/e2e/test_migrations.py)."""
import subprocess
import uuid

import pytest

from tests.conftest import REGIO


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([REGIO, "migrate", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def application(region) -> dict:
    with region.client() as client:
        made = client.post("/apps/v3/applications/", json={
            "name": "Stays", "slug": f"stays-{uuid.uuid4().hex[:8]}", "organisation": region.organisation,
            "region": region.region})
    assert made.status_code == 201, made.text
    region.applications.append(made.json()["uuid"])
    return made.json()


def test_a_region_that_does_not_exist_is_told_and_exits_1(region, application):
    refused = migrate(application["slug"], "--to", "nowhere")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no region 'nowhere'" in refused.stderr and "local" in refused.stderr
    unknown = migrate(f"missing-{uuid.uuid4().hex[:6]}", "--to", "local")
    assert unknown.returncode == 1 and "no application 'missing-" in unknown.stderr


def test_the_control_panels_refusal_is_told_and_exits_1(region, application):
    with region.client() as client:
        if client.get("/apps/v3/application-migrations/").status_code == 404:
            pytest.skip("the running control panel predates migrations: restart the region (regio up)")
        own = next(r["slug"] for r in client.get("/apps/v3/regions/").json()["results"]
                   if r["uuid"] == application["region"])
    # By its uuid, to the region it is in already: the API's answer, named by its field.
    refused = migrate(application["uuid"], "--to", own)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused the migration: region: The application is already in" in refused.stderr
    assert region.token not in refused.stdout + refused.stderr
