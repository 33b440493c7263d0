"""What a deployed application prints reaches its environment's logs in the API:
runner agent → REGIO_LOGS stream → control panel."""
import time
import uuid

import httpx

from tests.e2e.test_walking_skeleton import create_application, deploy

LOG_TIMEOUT = 60


def wait_for_line(client: httpx.Client, environment_id: str, text: str) -> tuple[dict, list[dict]]:
    """Follow the environment's log as the divio client does, until a line contains ``text``."""
    page = client.get(f"/apps/v3/environments/{environment_id}/logs/").json()
    seen = list(page["results"])
    deadline = time.monotonic() + LOG_TIMEOUT
    while not any(text in line["message"] for line in seen):
        assert time.monotonic() < deadline, f"{text!r} not in the logs after {LOG_TIMEOUT}s: {seen[-20:]}"
        time.sleep(0.5)
        page = client.get(page["next"]).json()
        seen += page["results"]
    return next(line for line in seen if text in line["message"]), seen


def test_a_request_to_the_application_shows_in_its_logs(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        deployment = deploy(client, env_id)
        assert deployment["success"] is True

        # The sample application prints one line per request, with the path asked for.
        probe = f"/probe-{uuid.uuid4().hex[:8]}"
        host = f"{app['slug']}-stage.{region.domain}"
        assert httpx.get(f"{region.ingress_url}{probe}", headers={"Host": host}, timeout=10).status_code == 200

        line, seen = wait_for_line(client, env_id, probe)
        assert line["service"] == "web" and "GET" in line["message"] and line["instance"]
        started = [s for s in seen if s["service"] == "platform" and s["instance"] == line["instance"]]
        assert started and started[0]["message"].startswith(f"instance {line['instance'][:8]} started on ")
