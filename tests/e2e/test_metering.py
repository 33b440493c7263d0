"""An instance's run time, metered by its runner agent and recorded in the control panel's
usage ledger, is Docker's own run time of its container: through a restart of the controller
and of the runner agent that runs it (while it serves), and its stop once it is no longer
desired, every second once and none twice. It is replaced by a redeploy, or sooner by the
controller when its runner was away long enough to count as lost (`regio up` may take longer
than runner_lost_seconds): stopped either way by the restarted agent."""
import time
from datetime import UTC, datetime, timedelta

import docker

from tests.e2e.load import Load
from tests.e2e.test_runners import kill, restart_what_is_down, wait_until
from tests.e2e.test_walking_skeleton import deploy, log_of
from tests.e2e.test_zero_downtime import new_version, probe  # noqa: F401 (a fixture)


def serving_container(engine: docker.DockerClient, env_id: str) -> dict:
    running = engine.api.containers(filters={"label": f"regio.environment={env_id}", "status": "running"})
    assert len(running) == 1, running
    return engine.api.inspect_container(running[0]["Id"])


def docker_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def died_at(engine: docker.DockerClient, container_id: str, since: datetime) -> datetime:
    """When the engine says the container's process ended (its ``die`` event: FinishedAt)."""
    events = engine.events(since=since, until=datetime.now(UTC) + timedelta(seconds=1), decode=True,
                           filters={"container": container_id, "event": "die"})
    times = [datetime.fromtimestamp(e["timeNano"] / 1e9, UTC) for e in events]
    assert len(times) == 1, times
    return times[0]


def usage_events(client, env_id: str) -> list[dict]:
    """Every usage event of the environment, following the ledger's cursor."""
    events, after = [], 0
    while True:
        page = client.get("/billing/v3/usage-events/", params={"environment": env_id, "after": after,
                                                                "limit": 1000})
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["results"]
        if not body["results"]:
            return events
        after = body["next_after"]


def test_an_instances_metered_time_is_its_containers_run_time_through_restarts(region, probe):  # noqa: F811
    app, repo, host = probe
    env_id = app["test_status"]["uuid"]
    engine = docker.from_env()
    try:
        container = serving_container(engine, env_id)
        labels = container["Config"]["Labels"]
        instance_id, runner = labels["regio.instance"], labels["regio.runner"]
        started_at = docker_time(container["State"]["StartedAt"])
        with region.client() as client, Load(region.ingress_url, host) as load:
            # The runner agent that runs it and the controller die; the container serves on.
            kill("controller")
            kill(f"runner-agent-{runner.removeprefix('runner-')}")
            time.sleep(2)
            restart_what_is_down()
            time.sleep(5)  # the restarted agent meters it on
            # No longer desired once a new release replaces it: stopped and removed.
            new_version(repo, 2)
            second = deploy(client, env_id)
            assert second["success"], log_of(client, second)
            wait_until(lambda: not engine.api.containers(all=True, filters={"id": container["Id"]}),
                       "the replaced container removed", timeout=60)
            ended = died_at(engine, container["Id"], started_at)
            ran = (ended - started_at).total_seconds()

            def metered_to_its_end():
                mine = [e for e in usage_events(client, env_id)
                        if e["kind"] == "instance" and e["key"].startswith(f"instance:{instance_id}:")]
                return mine if mine and abs(sum(float(e["quantity"]) for e in mine) - ran) < 1 else None

            pieces = wait_until(metered_to_its_end, "the instance's run time in the usage ledger", timeout=120)
    finally:
        engine.close()
    assert load.failures() == [], load.failures()[:5]
    keys = [e["key"] for e in pieces]
    assert len(set(keys)) == len(keys), keys
    pieces.sort(key=lambda e: e["period_start"])
    # From Docker's StartedAt to its FinishedAt, each piece where the one before ended.
    assert docker_time(pieces[0]["period_start"]) == started_at
    for before, after in zip(pieces, pieces[1:]):
        assert after["period_start"] == before["period_end"], (before, after)
    assert abs((docker_time(pieces[-1]["period_end"]) - ended).total_seconds()) < 1
    assert all(e["unit"] == "seconds" and e["memory_mb"] for e in pieces)
    print(f"container ran {ran:.3f}s; metered {sum(float(e['quantity']) for e in pieces):.3f}s "
          f"in {len(pieces)} piece(s)")
