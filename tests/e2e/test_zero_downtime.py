"""Deployments that never take a live site down: under continuous requests, redeploys
switch from one release to the next without a failed request, a slow request the old
release took is answered before it stops, and failed deployments (a broken release
command, an app that never listens, an app that answers 503) leave the previous release
answering throughout."""
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.load import Load
from tests.e2e.test_walking_skeleton import create_application, deploy, log_of, wait_for_deployment


@pytest.fixture
def probe(region, git_repo):
    """The probe app at version 1, deployed to test, with a short sanity-test limit."""
    repo = git_repo("probe")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        assert client.patch(f"/apps/v3/environments/{env_id}/", json={"sanity_timeout_seconds": 8}).status_code == 200
        first = deploy(client, env_id)
        assert first["success"], log_of(client, first)
    return app, repo, f"{app['slug']}-stage.{region.domain}"


def new_version(repo, version: int) -> None:
    (repo.path / "version.txt").write_text(f"{version}\n")
    repo.commit(f"version {version}")


def never_went_back(versions: list[str]) -> bool:
    collapsed = [int(v) for v, _ in itertools.groupby(versions)]
    return collapsed == sorted(collapsed)


def test_ten_redeploys_under_load_fail_no_request(region, probe):
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    with region.client() as client, Load(region.ingress_url, host) as load:
        for version in range(2, 12):
            new_version(repo, version)
            deployment = deploy(client, env_id)
            assert deployment["success"], log_of(client, deployment)
    assert load.failures() == [], load.failures()[:5]
    versions = load.versions()
    assert len(versions) > 100 and versions[-1] == "11"
    # Each answer came from the release serving at that moment: never back to an older one.
    assert never_went_back(versions), versions
    assert set(versions) <= {str(v) for v in range(1, 12)}


def test_a_slow_request_to_the_old_release_is_answered_before_the_old_release_stops(region, probe):
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    with region.client() as client, ThreadPoolExecutor(1) as pool:
        new_version(repo, 2)
        response = client.post("/apps/v3/deployments/", json={"environment": env_id})
        assert response.status_code == 201, response.text
        deployment_id = response.json()["uuid"]
        # While the new release is tested the routes still lead to the old one: the slow
        # request starts there and is still running when they move.
        deadline = time.monotonic() + 300
        while client.get(f"/apps/v3/deployments/{deployment_id}/").json()["status"] != "sanity tests":
            assert time.monotonic() < deadline, "the deployment never reached its sanity tests"
            time.sleep(0.02)
        slow = pool.submit(httpx.get, f"{region.ingress_url}/?sleep=4", headers={"Host": host}, timeout=30)
        deployment = wait_for_deployment(client, deployment_id)
        answer = slow.result()
        log = log_of(client, deployment)
    assert deployment["success"], log
    assert answer.status_code == 200 and answer.text.startswith("version=1 "), answer.text
    assert "Finalizing: waiting for 1 request(s) in flight to the old instance(s), at most 30s" in log
    [drained] = [line for line in log.splitlines() if line.startswith("Finalizing: old instance(s) drained in")]
    assert drained.endswith("no request left in flight")
    assert get_version(region, host) == "2"


def get_version(region, host: str) -> str:
    page = httpx.get(f"{region.ingress_url}/", headers={"Host": host}, timeout=10)
    assert page.status_code == 200, page.text
    return page.text.split()[0].removeprefix("version=")


@pytest.mark.parametrize("breakage, reason", [
    ("release command", "Release command migrate failed with exit code 3"),
    ("never listens", "did not answer"),
    ("answers 503", "(last: HTTP 503)"),
])
def test_a_failed_deployment_leaves_the_previous_release_answering(region, probe, breakage, reason):
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    with region.client() as client:
        if breakage == "release command":
            client.patch(f"/apps/v3/applications/{app['uuid']}/", json={
                "release_commands": [{"label": "migrate", "command": "echo migrating; exit 3"}]})
        else:
            mode = "silent" if breakage == "never listens" else "unavailable"
            client.post("/apps/v3/environment-variables/", json={"environment": env_id, "name": "MODE", "value": mode})
        new_version(repo, 2)
        with Load(region.ingress_url, host) as load:
            deployment = deploy(client, env_id)
        log = log_of(client, deployment)
    assert deployment["success"] is False
    assert reason in log and "The previous release keeps serving." in log
    if breakage == "release command":
        assert "[migrate] migrating" in log
    assert load.failures() == [] and set(load.versions()) == {"1"}


def test_rollback_serves_the_previous_release_again(region, probe):
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    with region.client() as client:
        [first] = client.get("/apps/v3/deployments/", params={"environment": env_id}).json()["results"]
        new_version(repo, 2)
        assert deploy(client, env_id)["success"]
        with Load(region.ingress_url, host) as load:
            response = client.post("/apps/v3/deployments/", json={"environment": env_id, "redeploy": first["uuid"]})
            assert response.status_code == 201, response.text
            rollback = wait_for_deployment(client, response.json()["uuid"])
        assert rollback["success"], log_of(client, rollback)
        assert "build" not in [s["name"] for s in rollback["steps"]]
    assert load.failures() == []
    assert load.versions()[-1] == "1" and never_went_back(load.versions()[::-1])
