"""The region as an operator runs it: `regio up` is idempotent, refuses a taken port by
name, and a killed service loses no queued deployment."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from regio_cli.region import CHECKOUT
from regio_common.layout import Layout, Ports, default_state_dir
from tests.e2e.test_walking_skeleton import create_application, get_page, wait_for_deployment

REGIO = str(CHECKOUT / "regio")


def pids(state_dir: Path) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted((state_dir / "run").glob("*.pid"))}


def test_a_second_up_reuses_what_runs(region):
    state = default_state_dir(CHECKOUT)
    before = pids(state)
    result = subprocess.run([REGIO, "up"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert pids(state) == before
    assert f"export REGIO_TOKEN={region.token}" in result.stdout


def test_up_names_a_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        layout = Layout(state_dir=tmp_path / "state", ports=Ports(postgres=port))
        layout.save()
        result = subprocess.run([REGIO, "up", "--state-dir", str(layout.state_dir)], capture_output=True, text=True,
                                timeout=300)
    assert result.returncode != 0
    assert f"port {port} (for postgres) is already taken" in result.stderr


def test_a_killed_service_loses_no_queued_deployment(region, git_repo):
    """Kill the builder and the controller, ask for a deployment while they are down,
    then `regio up` again: the deployment completes."""
    state = default_state_dir(CHECKOUT)
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        for service in ("builder", "controller"):
            os.kill(int((state / "run" / f"{service}.pid").read_text()), signal.SIGKILL)
        time.sleep(0.5)
        response = client.post("/apps/v3/deployments/", json={"environment": env_id})
        assert response.status_code == 201
        time.sleep(1)
        waiting = client.get(f"/apps/v3/deployments/{response.json()['uuid']}/").json()
        assert waiting["status"] == "provisioning" and waiting["ended_at"] is None  # no builder took it
        result = subprocess.run([REGIO, "up"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        deployment = wait_for_deployment(client, response.json()["uuid"])
        assert deployment["success"] is True
        assert get_page(region, f"{app['slug']}-stage.{region.domain}").status_code == 200


def test_down_then_up_finds_the_same_applications_serving(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        response = client.post("/apps/v3/deployments/", json={"environment": app["test_status"]["uuid"]})
        assert wait_for_deployment(client, response.json()["uuid"])["success"] is True
    host = f"{app['slug']}-stage.{region.domain}"
    assert subprocess.run([REGIO, "down"], capture_output=True, timeout=300).returncode == 0
    assert subprocess.run([REGIO, "status"], capture_output=True, timeout=60).returncode != 0
    result = subprocess.run([REGIO, "up"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with region.client() as client:
        assert client.get(f"/apps/v3/applications/{app['uuid']}/").json()["slug"] == app["slug"]
    page = get_page(region, host)
    assert page.status_code == 200 and "hello" in page.text
