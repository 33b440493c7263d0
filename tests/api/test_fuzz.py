"""schemathesis against the control panel's /openapi.json, authenticated, with a bounded
number of examples per operation: no 5xx, and every response matches the document.

Every method is fuzzed, DELETE included. So that a DELETE can reach nothing the rest of the
region's tests need, the fuzzer acts as a caller of its own: a new user, signed up through
the web pages, with a token and an organisation of its own, and no membership anywhere
else (the seeded admin's token, organisation and region are out of its reach by tenancy).
What its own run needs (its token and its membership) the hooks keep from its DELETEs
(fuzz_hooks.py). The applications it made are deleted at the end."""
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regio_cli.region import CHECKOUT, Region
from regio_common.layout import Layout, default_state_dir

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
HOOKS = Path(__file__).parent / "fuzz_hooks.py"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_TOKEN = re.compile(r"data-new-token>([^<]+)<")


@dataclass
class FuzzCaller:
    token: str
    token_id: str
    organisation: str
    membership: str


def _set_password(email: str, password: str, tmp_path: Path) -> None:
    """As an operator does, with the control panel's own settings (the password in a file)."""
    region = Region(Layout.load(default_state_dir(CHECKOUT)), say=print)
    service = next(s for s in region.services() if s.name == "controlpanel")
    secret = tmp_path / "fuzz-password"
    secret.write_text(password + "\n")
    subprocess.run([sys.executable, "-m", "regio_controlpanel.web.accounts", email, "--password-file", str(secret)],
                   env={**os.environ, **region.service_env(service)}, check=True, capture_output=True)
    secret.unlink()


def _csrf(page: httpx.Response) -> str:
    return CSRF.search(page.text).group(1)


@pytest.fixture
def fuzz_caller(region, tmp_path) -> FuzzCaller:
    email, password = f"fuzz-{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(18)
    _set_password(email, password, tmp_path)
    with httpx.Client(base_url=region.api_url, timeout=30) as web:
        signed_in = web.post("/web/login", data={"email": email, "password": password, "next": "/web/",
                                                 "csrf_token": _csrf(web.get("/web/login"))})
        assert signed_in.status_code == 303, signed_in.text
        made = web.post("/web/tokens", data={"name": "fuzz", "csrf_token": _csrf(web.get("/web/tokens"))})
        assert made.status_code == 201, made.text
        token = NEW_TOKEN.search(made.text).group(1).strip()
    with httpx.Client(base_url=region.api_url, headers={"Authorization": f"Token {token}"}, timeout=30) as api:
        org = api.post("/iam/v3/organisations/", json={"name": "Fuzzed"}).json()["uuid"]
        membership = api.get("/iam/v3/memberships/", params={"organisation": org}).json()["results"][0]["uuid"]
        token_id = api.get("/iam/v3/tokens/").json()["results"][0]["uuid"]
    caller = FuzzCaller(token, token_id, org, membership)
    yield caller
    with httpx.Client(base_url=region.api_url, headers={"Authorization": f"Token {token}"}, timeout=30) as api:
        # Whatever it made, in whichever of its organisations: their containers and routes go.
        listed = api.get("/apps/v3/applications/", params={"page_size": 1000})
        assert listed.status_code == 200, f"the fuzz run's caller lost its token: {listed.status_code}"
        for app in listed.json()["results"]:
            assert api.delete(f"/apps/v3/applications/{app['uuid']}/").status_code in (204, 404)


def _region_is_whole(region) -> None:
    """What the tests after the fuzz run need: the admin's token, organisation and region."""
    with region.client() as admin:
        assert admin.get("/iam/v3/me/").status_code == 200
        orgs = {o["uuid"] for o in admin.get("/iam/v3/organisations/").json()["results"]}
        assert region.organisation in orgs
        assert region.region in {r["uuid"] for r in admin.get("/apps/v3/regions/").json()["results"]}


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (requirements-dev.txt)")
def test_no_server_error_and_no_response_off_the_schema(region, fuzz_caller, tmp_path):
    # The token reaches schemathesis through its environment, never its command line.
    config = tmp_path / "schemathesis.toml"
    config.write_text('headers = { Authorization = "Token ${REGIO_FUZZ_TOKEN}" }\n')
    env = {**os.environ, "REGIO_FUZZ_TOKEN": fuzz_caller.token, "SCHEMATHESIS_HOOKS": str(HOOKS),
           # No DELETE takes an organisation or a region today; should one come, these stay too.
           "REGIO_FUZZ_KEEP": ",".join((fuzz_caller.token_id, fuzz_caller.membership, fuzz_caller.organisation,
                                        region.organisation, region.region))}
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(config), "run", f"{region.api_url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", "10",
         "--seed", "20261126", "--no-color"],
        capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout
    assert re.search(r"DELETE /", result.stdout), "no DELETE operation was fuzzed"

    # The run's own caller is still whole, and so is what the rest of the region's tests use.
    with httpx.Client(base_url=region.api_url, headers={"Authorization": f"Token {fuzz_caller.token}"}) as api:
        assert api.get("/iam/v3/me/").status_code == 200
        assert api.get(f"/iam/v3/organisations/{fuzz_caller.organisation}/").status_code == 200
    _region_is_whole(region)
