"""From a git repository to a page served through the ingress, across every service:
control panel → builder → control panel → controller → runner agent → ingress (Caddy)."""
import time
import uuid

import httpx

DEPLOY_TIMEOUT = 300


def wait_for_deployment(client: httpx.Client, deployment_id: str) -> dict:
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    percents = []
    while time.monotonic() < deadline:
        deployment = client.get(f"/apps/v3/deployments/{deployment_id}/").json()
        percents.append(deployment["percent"])
        if deployment["ended_at"] is not None:
            assert percents == sorted(percents), f"percent went backwards: {percents}"
            return deployment
        time.sleep(0.25)
    raise AssertionError(f"deployment {deployment_id} did not end in {DEPLOY_TIMEOUT}s")


def get_page(region, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"{region.ingress_url}{path}", headers={"Host": host}, timeout=10)


def create_application(client, region, repo_url: str, branch: str = "main", **fields) -> dict:
    repo = client.post("/apps/v3/repositories/", json={"organisation": region.organisation, "url": repo_url})
    assert repo.status_code == 201, repo.text
    app = client.post("/apps/v3/applications/", json={
        "name": "Hello", "slug": f"hello-{uuid.uuid4().hex[:6]}", "organisation": region.organisation,
        "region": region.region, "repository": repo.json()["uuid"], "branch": branch, **fields})
    assert app.status_code == 201, app.text
    region.applications.append(app.json()["uuid"])
    return app.json()


def deploy(client, environment_id: str, build_mode: str = "AUTO") -> dict:
    response = client.post("/apps/v3/deployments/", json={"environment": environment_id, "build_mode": build_mode})
    assert response.status_code == 201, response.text
    return wait_for_deployment(client, response.json()["uuid"])


def log_of(client, deployment: dict) -> str:
    return client.get(f"/apps/v3/deployments/{deployment['uuid']}/logs").json()["logs"]



def test_deploy_serve_and_survive_a_broken_build(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        host = f"{app['slug']}-stage.{region.domain}"
        variable = client.post("/apps/v3/environment-variables/", json={
            "environment": env_id, "name": "GREETING", "value": "Hello from Regio", "is_sensitive": False})
        assert variable.status_code == 201, variable.text

        first = deploy(client, env_id)
        log = log_of(client, first)
        assert first["success"] is True, log
        assert first["percent"] == 100 and first["status"] == "success"
        assert "COPY app.py /app/app.py" in log  # docker's own build output reached the log

        page = get_page(region, host)
        assert page.status_code == 200
        assert "Hello from Regio" in page.text and "stage test" in page.text and host in page.text

        # A Dockerfile that does not build fails with docker's reason; version 1 keeps serving.
        (repo.path / "Dockerfile").write_text("FROM regio/python:3.11\nCOPY missing-file.txt /app/\n")
        repo.commit("break the build")
        broken = deploy(client, env_id)
        broken_log = log_of(client, broken)
        assert broken["success"] is False
        assert "missing-file.txt" in broken_log and "Build failed" in broken_log
        still = get_page(region, host)
        assert still.status_code == 200 and "Hello from Regio" in still.text

        # An unknown host gets the ingress's plain 404.
        assert get_page(region, f"nobody-{uuid.uuid4().hex[:6]}.{region.domain}").status_code == 404


def test_a_branch_that_does_not_exist_fails_with_the_reason(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url, branch="no-such-branch")
        failed = deploy(client, app["test_status"]["uuid"])
        assert failed["success"] is False
        assert "no-such-branch" in log_of(client, failed)


def test_a_repository_that_cannot_be_cloned_fails_with_the_reason(region, tmp_path):
    with region.client() as client:
        app = create_application(client, region, f"file://{tmp_path}/nothing-here.git")
        failed = deploy(client, app["test_status"]["uuid"])
        assert failed["success"] is False
        assert "nothing-here.git" in log_of(client, failed)
