"""The official `divio` client (divio-cli 4.0.5) against a running region, configured
as DIVIO_API.md says: DIVIO_ZONE, a netrc entry with the API token, offline settings.
Each assertion reads what the command printed, not only its exit code."""
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS, GitRepo
from tests.e2e.test_walking_skeleton import create_application

DIVIO = shutil.which("divio", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(DIVIO is None, reason="divio-cli is not installed (requirements-dev.txt)")


def divio_with(token: str, api_url: str, home: Path):
    """The client as a user with ``token`` runs it: their netrc, no update checks."""
    (home / ".netrc").write_text(f"machine 127.0.0.1\n\tlogin user@regio.localhost\n\tpassword {token}\n")
    (home / ".netrc").chmod(0o600)
    (home / ".config" / "divio").mkdir(parents=True)
    (home / ".config" / "divio" / "config.json").write_text(
        json.dumps({"update_check_timestamp": 99999999999, "sentry-dsn": ""}))
    env = {"HOME": str(home), "DIVIO_ZONE": api_url, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([DIVIO, *args], env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"divio {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    return run


@pytest.fixture(scope="module")
def divio(region, tmp_path_factory):
    return divio_with(region.token, region.api_url, tmp_path_factory.mktemp("divio-home"))


@pytest.fixture(scope="module")
def application(region, tmp_path_factory):

    work = tmp_path_factory.mktemp("repo") / "hello"
    shutil.copytree(APPS / "hello", work)
    repo = GitRepo(work)
    repo.git("init", "-q", "-b", "main")
    repo.commit("first version")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        client.post("/apps/v3/environment-variables/", json={
            "environment": app["test_status"]["uuid"], "name": "GREETING", "value": "Hello divio"})
    return app


def test_login_organisations_and_regions(divio, region):
    assert "Login" in divio("doctor", "-c", "login").stdout
    assert "Default organisation" in divio("organisations", "list").stdout
    assert region.region in divio("regions", "list").stdout


def test_deploy_and_read_it_back(divio, application, region):
    remote = ["--remote-id", application["uuid"]]
    assert application["slug"] in divio("app", "list").stdout

    deployed = divio("app", "deploy", "test", *remote)
    assert "Deploying test environment" in deployed.stdout

    log = divio("app", "deploy-log", "test", *remote).stdout
    assert "COPY app.py /app/app.py" in log and "Deployment succeeded" in log
    deployments = divio("app", "deployments", "list", *remote).stdout
    assert "success" in deployments and "True" in deployments
    with region.client() as client:
        [latest] = client.get("/apps/v3/deployments/", params={"application": application["uuid"]}).json()["results"]
    one = divio("app", "deployments", "get", latest["uuid"], *remote).stdout
    assert latest["uuid"] in one and "GREETING" in one and "success" in one

    variables = divio("app", "environment-variables", "list", *remote).stdout
    assert "GREETING" in variables and "Hello divio" in variables
    variable = divio("app", "environment-variables", "get", "GREETING", *remote).stdout
    assert "Hello divio" in variable and "Environment: test" in variable


def test_runtime_logs_show_the_applications_output(divio, application, region):
    """`divio app logs` prints what the containers wrote: here the sample app's access log line."""
    remote = ["--remote-id", application["uuid"]]
    if "Deploying" not in divio("app", "deploy", "test", *remote).stdout:
        pytest.fail("deploy printed nothing")
    marker = f"/divio-logs-{uuid.uuid4().hex[:8]}"
    host = f"{application['slug']}-stage.{region.domain}"
    assert httpx.get(f"{region.ingress_url}{marker}", headers={"Host": host}, timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while marker not in (logs := divio("app", "logs", "test", *remote).stdout):
        assert time.monotonic() < deadline, f"the request never reached the logs:\n{logs}"
        time.sleep(1)
    assert f"GET {marker}" in logs


def test_services_and_service_instances(divio, application, region):
    services = divio("services", "list", "-r", region.region).stdout
    assert "PostgreSQL 18" in services and "DATABASE" in services and "STORAGE" in services
    with region.client() as client:
        postgres = next(s for s in client.get("/apps/v3/services/", params={"region": region.region}).json()["results"]
                        if s["type"] == "DATABASE")
    remote = ["--remote-id", application["uuid"]]
    divio("app", "service-instances", "add", "test", "-p", "DEFAULT", "-r", region.region, "-s", postgres["uuid"],
          *remote)
    listed = divio("app", "service-instances", "list", "test", *remote).stdout
    assert "DEFAULT" in listed and "DATABASE" in listed and "NEW" in listed


def test_a_failed_deployment_makes_the_client_fail(divio, region, tmp_path):

    work = tmp_path / "broken"
    shutil.copytree(APPS / "hello", work)
    (work / "Dockerfile").write_text("FROM regio/python:3.11\nRUN exit 3\n")
    repo = GitRepo(work)
    repo.git("init", "-q", "-b", "main")
    repo.commit("broken")
    with region.client() as client:
        app = create_application(client, region, repo.url)
    result = divio("app", "deploy", "test", "--remote-id", app["uuid"], check=False)
    assert result.returncode != 0

