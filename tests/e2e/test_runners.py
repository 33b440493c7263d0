"""Several runners of one region on this machine (`regio up --runners 2`): an environment's
instances spread over them, scale up and down under load without a failed request, come
back on the other runner when one runner is lost with its containers, and a controller
killed in the middle of a scale-up ends with exactly the instances wanted."""
import os
import signal
import subprocess
import time

import docker
import pytest

from regio_cli.region import CHECKOUT
from regio_common.layout import Layout, default_state_dir
from tests.e2e.load import Load
from tests.e2e.test_walking_skeleton import create_application, deploy, log_of

REGIO = str(CHECKOUT / "regio")
STATE = default_state_dir(CHECKOUT)
LOST_AFTER = 10  # the controller's default runner_lost_seconds


@pytest.fixture(scope="module", autouse=True)
def two_runners():
    layout = Layout.load(STATE)
    assert layout is not None and layout.runners >= 2, "these tests need a region of two runners: ./regio up --runners 2"


@pytest.fixture
def scalable_probe(region, git_repo):
    """The probe app on the Business plan (up to 4 instances in every environment), deployed to
    test on two instances."""
    repo = git_repo("probe")
    with region.client() as client:
        groups = client.get("/billing/v3/application-plan-groups/").json()["results"]
        business = next(g for g in groups if g["name"] == "Business")
        plan = next(p["uuid"] for p in business["plans"] if p["name"] == "Business")
        app = create_application(client, region, repo.url, plan_group=business["uuid"], plan=plan)
        env_id = app["test_status"]["uuid"]
        answer = client.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 2, "sanity_timeout_seconds": 8})
        assert answer.status_code == 200, answer.text
        first = deploy(client, env_id)
        assert first["success"], log_of(client, first)
    return env_id, f"{app['slug']}-stage.{region.domain}"


def running_containers(env_id: str) -> list[dict]:
    engine = docker.from_env()
    try:
        return engine.api.containers(filters={"label": f"regio.environment={env_id}", "status": "running"})
    finally:
        engine.close()


def runners_of(env_id: str) -> list[str]:
    return sorted(c["Labels"]["regio.runner"] for c in running_containers(env_id))


def wait_until(check, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.5)
    return result


def hosts_answering(load: Load, since: float) -> set[str]:
    """The containers (by hostname) that answered the load since ``since``."""
    return {a.body.split("host=")[1].strip() for a in load.answers if a.at >= since and a.status == 200}


def events(client, env_id: str) -> list[str]:
    return [e["message"] for e in client.get(f"/apps/v3/environments/{env_id}/events/").json()["results"]]


def kill(service: str) -> None:
    os.kill(int((STATE / "run" / f"{service}.pid").read_text()), signal.SIGKILL)


def restart_what_is_down() -> None:
    result = subprocess.run([REGIO, "up"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_instances_spread_over_the_runners_and_scale_under_load_without_a_failed_request(region, scalable_probe):
    env_id, host = scalable_probe
    assert runners_of(env_id) == ["runner-1", "runner-2"]
    with region.client() as client, Load(region.ingress_url, host) as load:
        assert client.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 4}).status_code == 200
        wait_until(lambda: len(runners_of(env_id)) == 4, "four containers")
        assert runners_of(env_id) == ["runner-1", "runner-1", "runner-2", "runner-2"]
        # The routes follow: all four answer the site's visitors.
        since = time.monotonic()
        wait_until(lambda: len(hosts_answering(load, since)) == 4, "four instances answering")

        assert client.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 1}).status_code == 200
        wait_until(lambda: len(runners_of(env_id)) == 1, "one container left")
        settled = time.monotonic()
        time.sleep(1)
        assert len(hosts_answering(load, settled)) == 1
        told = events(client, env_id)
    assert load.failures() == [], load.failures()[:5]
    assert "scaling from 2 to 4 instance(s)" in told and "scaling from 4 to 1 instance(s)" in told


def test_a_lost_runner_with_its_containers_gone_is_replaced_on_the_other_runner(region, scalable_probe):
    env_id, host = scalable_probe
    engine = docker.from_env()
    try:
        with Load(region.ingress_url, host) as load:
            # The host of runner-2 goes away: its agent dies and its containers with it.
            kill("runner-agent-2")
            for container in engine.api.containers(filters={"label": "regio.runner=runner-2"}):
                engine.api.remove_container(container["Id"], force=True)
            lost_at = time.monotonic()
            wait_until(lambda: runners_of(env_id) == ["runner-1", "runner-1"], "both instances on runner-1",
                       timeout=LOST_AFTER + 60)
            healed_in = time.monotonic() - lost_at
            since = time.monotonic()
            wait_until(lambda: len(hosts_answering(load, since)) == 2, "both instances answering")
            time.sleep(1)
        with region.client() as client:
            # Told once the lost instance's drain is over, which may come after both answer.
            told = wait_until(lambda: (e := events(client, env_id)) and any("runner runner-2 is lost" in m for m in e)
                              and e, "the lost runner in the events", timeout=60)
            # The platform's lines only: the load's requests are lines of the log too.
            logs = [line["message"] for line in client.get(f"/apps/v3/environments/{env_id}/logs/",
                                                           params={"service": "platform"}).json()["results"]]
    finally:
        engine.close()
        restart_what_is_down()
    print(f"instances back on runner-1 {healed_in:.1f}s after the runner was lost (lost after {LOST_AFTER}s)")
    # Once both replacements answer, every request succeeds.
    assert [a for a in load.answers if a.at >= since and a.status != 200] == []
    assert any("runner runner-2 is lost" in m for m in told), told
    assert any("runner runner-2 is lost" in m for m in logs), logs[-20:]  # the runtime logs tell it too


def test_a_controller_killed_during_a_scale_up_ends_with_exactly_the_wanted_instances(region, scalable_probe):
    env_id, host = scalable_probe
    with region.client() as client, Load(region.ingress_url, host) as load:
        assert client.patch(f"/apps/v3/environments/{env_id}/", json={"instances": 4}).status_code == 200
        wait_until(lambda: len(runners_of(env_id)) > 2, "the scale-up under way", timeout=60)
        kill("controller")
        restart_what_is_down()
        wait_until(lambda: len(runners_of(env_id)) == 4, "four containers")
        since = time.monotonic()
        wait_until(lambda: len(hosts_answering(load, since)) == 4, "four instances answering")
        time.sleep(3)  # a few healing passes: nothing more is started
        assert len(runners_of(env_id)) == 4
    assert load.failures() == [], load.failures()[:5]
