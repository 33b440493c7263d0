"""Cancelling a running deployment, during its build and during its rollout: it ends
cancelled, the previous release answers throughout, and nothing of it is left running."""
import time

import docker
import pytest

from tests.e2e.load import Load
from tests.e2e.test_walking_skeleton import log_of, wait_for_deployment
from tests.e2e.test_zero_downtime import new_version, probe  # noqa: F401 (a fixture)


def wait_for_status(client, deployment_id: str, status: str) -> None:
    deadline = time.monotonic() + 120
    while client.get(f"/apps/v3/deployments/{deployment_id}/").json()["status"] != status:
        assert time.monotonic() < deadline, f"never reached {status}"
        time.sleep(0.1)


@pytest.mark.parametrize("during", ["build", "sanity tests"])
def test_a_cancelled_deployment_leaves_the_previous_release_serving(region, probe, during):  # noqa: F811
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    with region.client() as client:
        if during == "build":
            dockerfile = repo.path / "Dockerfile"
            # Unique, so no earlier run's layer cache skips the step (the engine's cache is shared).
            dockerfile.write_text(dockerfile.read_text().replace("COPY app.py",
                                                                 f"RUN sleep 60 # {time.time_ns()}\nCOPY app.py"))
        else:  # the new release never answers: the sanity test waits
            client.patch(f"/apps/v3/environments/{env_id}/", json={"sanity_timeout_seconds": 120})
            client.post("/apps/v3/environment-variables/", json={"environment": env_id, "name": "MODE", "value": "silent"})
        new_version(repo, 2)
        with Load(region.ingress_url, host) as load:
            deployment_id = client.post("/apps/v3/deployments/", json={"environment": env_id}).json()["uuid"]
            wait_for_status(client, deployment_id, during)
            started = time.monotonic()
            response = client.post(f"/apps/v3/deployments/{deployment_id}/cancel/", json={"reason": "changed my mind"})
            assert response.status_code == 200, response.text
            deployment = wait_for_deployment(client, deployment_id)
            # The platform stops its part: the build or the new instance goes within seconds.
            engine = docker.from_env()
            try:
                # The low-level list, not containers.list(): that inspects each container, and one
                # removed in between (as the cancelled ones are) makes it raise NotFound.
                while [c for c in engine.api.containers(all=True, filters={"label": f"regio.environment={env_id}"})
                       if (c["Labels"] or {}).get("regio.release") != first_release(client, env_id)] \
                        or builds_running(engine):
                    # A silent app ignores SIGTERM (it is PID 1): the runner kills it after its stop grace.
                    assert time.monotonic() - started < 60, "the cancelled deployment left something running"
                    time.sleep(0.5)
            finally:
                engine.close()
            log = log_of(client, deployment)
    assert deployment["status"] == "cancelled" and deployment["success"] is False
    assert "changed my mind" in log
    assert load.failures() == [] and set(load.versions()) == {"1"}


def first_release(client, env_id: str) -> str:
    deployments = client.get("/apps/v3/deployments/", params={"environment": env_id, "page_size": 100}).json()
    return next(d["release"] for d in reversed(deployments["results"]) if d["success"])


def builds_running(engine) -> bool:
    """A `RUN sleep` step of the classic builder runs in a container of its own."""
    return any("sleep 60" in (c["Command"] or "") for c in engine.api.containers())
