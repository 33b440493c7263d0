"""The containerised region (docker-compose.yml): every server and service in a container
of its own, started by docker-compose from the region image, builds, deploys and serves an
application through its own ingress.

It runs beside the region `regio up` started, on ports 1000 higher and with a state
directory of its own, sharing the one Docker Engine, as two regions' runners on one host
would."""
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from regio_cli import prerequisites
from regio_cli.region import CHECKOUT
from regio_common.layout import Layout, Ports
from tests.conftest import APPS, GitRepo, RunningRegion
from tests.e2e.test_walking_skeleton import create_application, deploy, log_of

PROJECT = "regio-compose-test"
PORT_SHIFT = 1000
IN_CONTAINERS = "/var/lib/regio"  # where docker-compose.yml mounts the state directory


def compose(state: Path, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker-compose", "-p", PROJECT, "-f", str(CHECKOUT / "docker-compose.yml"), *args],
                            cwd=CHECKOUT, env={**os.environ, "REGIO_COMPOSE_STATE": str(state)},
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def container_of(state: Path, service: str) -> str:
    return compose(state, "ps", "-q", service).stdout.strip()


@pytest.fixture(scope="module")
def compose_region(tmp_path_factory):
    state = tmp_path_factory.mktemp("compose-region")
    state.chmod(0o755)  # PostgreSQL runs as the `regio` account and must reach its data below
    shifted = Ports(**{f.name: getattr(Ports(), f.name) + PORT_SHIFT for f in dataclasses.fields(Ports)})
    Layout(state_dir=state, ports=shifted).save()
    prerequisites.build_base_images(CHECKOUT, print)  # the region image is built on regio/python
    try:
        build = subprocess.run([str(CHECKOUT / "deploy" / "region" / "build.sh")], capture_output=True, text=True,
                               timeout=900)
        assert build.returncode == 0, f"building the region image failed:\n{build.stdout}\n{build.stderr}"
        compose(state, "up", "-d")
        seed = container_of(state, "seed")
        exit_code = subprocess.run(["docker", "wait", seed], capture_output=True, text=True, timeout=300).stdout
        assert exit_code.strip() == "0", compose(state, "logs", "--no-color").stdout[-5000:]
        token = (state / "secrets" / "admin-token").read_text().strip()
        api_url = f"http://127.0.0.1:{shifted.controlpanel}"
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Token {token}"}) as client:
            organisation = client.get("/iam/v3/organisations/").json()["results"][0]["uuid"]
            region_id = client.get("/apps/v3/regions/").json()["results"][0]["uuid"]
        region = RunningRegion(api_url, token, f"http://127.0.0.1:{shifted.ingress_http}",
                               Layout.load(state).region_domain, organisation, region_id)
        yield region, state
        region.delete_applications()
    finally:
        compose(state, "down", check=False)  # a failing `down` must not hide the test's own failure


def test_the_containerised_region_deploys_and_serves_an_application(compose_region):
    region, state = compose_region
    # The builder clones inside its container, where the state directory is mounted.
    shutil.copytree(APPS / "hello", state / "repos" / "hello")
    repo = GitRepo(state / "repos" / "hello")
    repo.git("init", "-q", "-b", "main")
    repo.commit("first version")

    with region.client() as client:
        app = create_application(client, region, f"file://{IN_CONTAINERS}/repos/hello")
        env_id = app["test_status"]["uuid"]
        variable = client.post("/apps/v3/environment-variables/", json={
            "environment": env_id, "name": "GREETING", "value": "Hello from a composed region",
            "is_sensitive": False})
        assert variable.status_code == 201, variable.text
        deployment = deploy(client, env_id)
        assert deployment["success"] is True, log_of(client, deployment)

    host = f"{app['slug']}-stage.{region.domain}"
    page = httpx.get(region.ingress_url, headers={"Host": host}, timeout=10)
    assert page.status_code == 200 and "Hello from a composed region" in page.text
    # Each component is a container of its own, kept running by the engine.
    for service in ("postgres", "nats", "caddy", "apps-postgres", "seaweedfs", "controlpanel", "builder",
                    "controller", "ingress", "runner-agent-1", "runner-agent-2"):
        state_of = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}",
                                   container_of(state, service)], capture_output=True, text=True).stdout.split()
        assert state_of == ["running", "healthy"], (service, state_of)


def test_a_crashed_service_is_restarted_by_the_engine(compose_region):
    region, state = compose_region
    controller = container_of(state, "controller")
    started, pid = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Pid}}", controller],
                                  capture_output=True, text=True).stdout.split()
    # A crash, not `docker kill`: the engine leaves a container it was told to stop stopped.
    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Health.Status}}",
                              controller], capture_output=True, text=True).stdout.split()
        if now and now[0] != started and now[1:] == ["healthy"]:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the controller's container was not restarted healthy: {now}")
