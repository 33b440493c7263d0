"""The committed OpenAPI document makes a working client: openapi-python-client generates
one from it, and that client alone (its typed functions and models) takes a sample app from
a git repository to a page served through the ingress, with an environment variable set."""
import importlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest

GENERATOR = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
DOCUMENT = Path(__file__).parents[2] / "services" / "controlpanel" / "openapi" / "openapi.json"
DEPLOY_TIMEOUT = 300


@pytest.fixture(scope="session")
def regio_client(tmp_path_factory):
    """The generated client package, importable as ``regio_client`` while the session lasts."""
    if GENERATOR is None:
        pytest.skip("openapi-python-client is not installed (requirements-dev.txt)")
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.json"
    # The default post-hooks run ruff over the output; formatting is not what is under test.
    config.write_text(json.dumps({"post_hooks": []}))
    result = subprocess.run(
        [GENERATOR, "generate", "--path", str(DOCUMENT), "--output-path", str(root / "regio_client"),
         "--meta", "none", "--config", str(config), "--fail-on-warning"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("regio_client")
    finally:
        sys.path.remove(str(root))


def parsed(response, model):
    """The typed body of a successful call; otherwise fail with what the server said."""
    assert isinstance(response.parsed, model), f"{response.status_code}: {response.content.decode()}"
    return response.parsed


def test_the_generated_client_deploys_an_app_with_a_variable(region, git_repo, regio_client):
    from regio_client.api.applications import create_application, create_repository
    from regio_client.api.deployments import create_deployment, deployment_logs, get_deployment
    from regio_client.api.environment_variables import create_variable
    from regio_client.models import (
        ApplicationIn,
        ApplicationOut,
        DeploymentIn,
        DeploymentLog,
        DeploymentOut,
        EnvironmentVariableIn,
        EnvironmentVariableOut,
        RepositoryIn,
        RepositoryOut,
    )

    repo = git_repo("hello")
    greeting = f"Generated {uuid.uuid4().hex[:8]}"
    organisation = UUID(region.organisation)
    with regio_client.AuthenticatedClient(base_url=region.api_url, token=region.token, prefix="Token",
                                          timeout=httpx.Timeout(30)) as client:
        repository = parsed(create_repository.sync_detailed(
            client=client, body=RepositoryIn(organisation=organisation, url=repo.url)), RepositoryOut)
        app = parsed(create_application.sync_detailed(client=client, body=ApplicationIn(
            name="Hello", slug=f"gen-{uuid.uuid4().hex[:6]}", organisation=organisation,
            region=UUID(region.region), repository=repository.uuid, branch="main")), ApplicationOut)
        region.applications.append(str(app.uuid))
        test = next(e for e in app.environments if e.slug == "test")

        variable = parsed(create_variable.sync_detailed(client=client, body=EnvironmentVariableIn(
            environment=test.uuid, name="GREETING", value=greeting, is_sensitive=False)), EnvironmentVariableOut)
        assert variable.value == greeting

        deployment = parsed(create_deployment.sync_detailed(
            client=client, body=DeploymentIn(environment=test.uuid, build_mode="AUTO")), DeploymentOut)
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while deployment.ended_at is None:
            assert time.monotonic() < deadline, f"deployment {deployment.uuid} did not end in {DEPLOY_TIMEOUT}s"
            time.sleep(0.25)
            deployment = parsed(get_deployment.sync_detailed(deployment.uuid, client=client), DeploymentOut)
        log = parsed(deployment_logs.sync_detailed(deployment.uuid, client=client), DeploymentLog)
        assert deployment.success is True, log.logs
        assert deployment.status == "success" and deployment.percent == 100
        assert "GREETING" in deployment.environment_variables

    # The site URL names the environment's domain on the ingress's port; the test host
    # cannot resolve the region's domain, so the request goes to the ingress with that Host.
    site = urlsplit(test.site_url)
    ingress = urlsplit(region.ingress_url)
    assert site.port == ingress.port
    page = httpx.get(f"{region.ingress_url}{site.path}", headers={"Host": site.hostname}, timeout=10)
    assert page.status_code == 200
    assert f"<h1>{greeting}</h1>" in page.text and "stage test" in page.text
