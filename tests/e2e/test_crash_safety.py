"""A platform service killed (SIGKILL) in the middle of a deployment: once it is started
again the deployment reaches a final state, the site answered throughout, and nothing is
left half-done: no container of the environment beyond what serves, none stopped."""
import os
import signal
import subprocess
import time

import docker
import pytest

from regio_cli.region import CHECKOUT
from regio_common.layout import default_state_dir
from tests.e2e.load import Load
from tests.e2e.test_walking_skeleton import log_of, wait_for_deployment
from tests.e2e.test_zero_downtime import new_version, probe  # noqa: F401 (a fixture)

REGIO = str(CHECKOUT / "regio")


def kill_when(client, deployment_id: str, statuses: set[str], service: str) -> str:
    deadline = time.monotonic() + 120
    while (status := client.get(f"/apps/v3/deployments/{deployment_id}/").json()["status"]) not in statuses:
        assert time.monotonic() < deadline and status not in ("success", "failure"), status
        time.sleep(0.05)
    os.kill(int((default_state_dir(CHECKOUT) / "run" / f"{service}.pid").read_text()), signal.SIGKILL)
    return status


def slow_build(repo) -> None:
    """A build step that takes seconds, uncached: a cached build can end between two polls."""
    dockerfile = repo.path / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("WORKDIR /app\n", f"WORKDIR /app\nRUN sleep 5 # {time.time_ns()}\n"))
    repo.commit("a slow build")


@pytest.mark.parametrize("service, statuses", [
    ("builder", {"build"}),
    ("controller", {"scaling", "sanity tests", "finalizing"}),
])
def test_a_service_killed_mid_deployment_leaves_nothing_half_done(region, probe, service, statuses):  # noqa: F811
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    new_version(repo, 2)
    if service == "builder":
        slow_build(repo)
    with region.client() as client, Load(region.ingress_url, host) as load:
        deployment_id = client.post("/apps/v3/deployments/", json={"environment": env_id}).json()["uuid"]
        killed_at = kill_when(client, deployment_id, statuses, service)
        result = subprocess.run([REGIO, "up"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        deployment = wait_for_deployment(client, deployment_id)
        assert deployment["success"], f"killed at {killed_at}: {log_of(client, deployment)}"
        time.sleep(1)
    assert load.failures() == [], load.failures()[:5]
    assert load.versions()[-1] == "2"
    # The old instance drains (a grace of seconds), then only the new one is left.
    engine = docker.from_env()
    try:
        deadline = time.monotonic() + 30
        # The engine's list alone: inspecting each (containers.list does) races with the removal of the old one.
        labelled = {"label": f"regio.environment={env_id}"}
        while len(containers := engine.api.containers(all=True, filters=labelled)) > 1:
            assert time.monotonic() < deadline, [(c["Names"], c["State"]) for c in containers]
            time.sleep(0.5)
        assert [c["State"] for c in containers] == ["running"]
        assert containers[0]["Labels"]["regio.release"] == client_release(region, deployment_id)
    finally:
        engine.close()


def client_release(region, deployment_id: str) -> str:
    with region.client() as client:
        return client.get(f"/apps/v3/deployments/{deployment_id}/").json()["release"]
