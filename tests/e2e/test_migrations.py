"""An application with a database and a bucket moves from the first region to a second one
while clients keep using it through its old address: no request fails, every write a client
was told succeeded is in the target's database, every object is in the target's bucket, the
target region serves it (its new default domain, and the old one forwarded by the source),
and the source runs none of it any more. A migration that cannot build in the target, or
is cancelled, leaves the source serving and writable, as it was."""
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import APPS, GitRepo
from tests.e2e.test_many_regions import plan_group_allowing, wait_for_state
from tests.e2e.test_runners import running_containers, wait_until
from tests.e2e.test_services import attach_both, notes, write
from tests.e2e.test_walking_skeleton import deploy, log_of

MIGRATION_TIMEOUT = 420.0


@dataclass
class Load:
    """Readers and one writer through the application's old address, all the while."""
    ingress_url: str
    host: str
    acknowledged: list[str] = field(default_factory=list)  # texts whose write answered 201
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._read, daemon=True) for _ in range(2)]
        self._threads.append(threading.Thread(target=self._write, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _timed(self, send) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = send()
        except httpx.HTTPError as e:
            self.failures.append(f"{type(e).__name__}: {e}")
            return None
        finally:
            self.requests += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
        return response

    def _read(self) -> None:
        with httpx.Client(base_url=self.ingress_url, headers={"Host": self.host}, timeout=30) as client:
            while not self._stop.is_set():
                response = self._timed(lambda: client.get("/"))
                if response is not None and response.status_code != 200:
                    self.failures.append(f"GET / answered {response.status_code}: {response.text[:200]}")
                time.sleep(0.02)

    def _write(self) -> None:
        with httpx.Client(base_url=self.ingress_url, headers={"Host": self.host}, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                text = f"write-{n:05d}"
                response = self._timed(lambda: client.post("/notes", params={"text": text}))
                if response is not None and response.status_code == 201:
                    self.acknowledged.append(text)
                elif response is not None:
                    self.failures.append(f"POST /notes answered {response.status_code}: {response.text[:200]}")
                time.sleep(0.05)


@pytest.fixture(scope="module")
def notes_repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("migrations") / "notes"
    shutil.copytree(APPS / "notes", work)
    repo = GitRepo(work)
    repo.git("init", "-q", "-b", "main")
    repo.commit("first version")
    return repo


@pytest.fixture(scope="module")
def moving(region, second_region, notes_repo) -> dict:
    """The dedicated region's organisation's application in the first (public) region, on a plan
    group that allows both, its test environment deployed with a database and a bucket. The
    module's tests migrate it in order: cancelled, failed, then done."""
    with second_region.owner.client() as client:
        repo = client.post("/apps/v3/repositories/", json={"organisation": second_region.owner.organisation,
                                                           "url": notes_repo.url})
        assert repo.status_code == 201, repo.text
        created = client.post("/apps/v3/applications/", json={
            "name": "Moving notes", "slug": f"moving-{uuid.uuid4().hex[:6]}",
            "organisation": second_region.owner.organisation, "region": region.region,
            "plan_group": plan_group_allowing(client, second_region.uuid), "repository": repo.json()["uuid"],
            "branch": "main"})
        assert created.status_code == 201, created.text
        app = created.json()
        second_region.applications.append(app["uuid"])
        attach_both(client, region, app["test_status"]["uuid"])
        deployed = deploy(client, app["test_status"]["uuid"])
        assert deployed["success"], log_of(client, deployed)
    write(region, f"{app['slug']}-stage.{region.domain}", "before the migration")
    with second_region.owner.client() as client:  # its runner heard: migrations check its room
        wait_for_state(client, second_region.uuid, "online")
    yield app
    # A test that failed half way may leave a migration running: it is ended first, or the
    # application (and so the dedicated region) could not be deleted.
    with second_region.owner.client() as client:
        listed = client.get("/apps/v3/application-migrations/", params={"application": app["uuid"]}).json()
        for running in (m for m in listed["results"] if m["ended_at"] is None):
            client.post(f"/apps/v3/application-migrations/{running['uuid']}/cancel/", json={"reason": "test ended"})
            wait_for_migration(client, running["uuid"])


def assert_source_serves_as_before(client: httpx.Client, region, second_region, app: dict, text: str) -> None:
    """Served from the first region, still writable there, nothing of it running in the second."""
    host = f"{app['slug']}-stage.{region.domain}"
    write(region, host, text)
    assert notes(region, host)["rows"][-1] == text
    assert client.get(f"/apps/v3/applications/{app['uuid']}/").json()["region"] == region.region
    containers = running_containers(app["test_status"]["uuid"])
    assert containers and not any(c["Labels"]["regio.scope"].endswith(f"-{second_region.slug}")
                                  for c in containers), [c["Labels"] for c in containers]
    services = client.get("/apps/v3/service-instances/", params={"environment": app["test_status"]["uuid"]})
    regions = {client.get(f"/apps/v3/services/{s['service']}/").json()["region"] for s in services.json()["results"]}
    assert regions == {region.region}


def migrate(client: httpx.Client, app: dict, to: str) -> dict:
    started = client.post("/apps/v3/application-migrations/", json={"application": app["uuid"], "region": to})
    assert started.status_code == 201, started.text
    return started.json()


def wait_for_migration(client: httpx.Client, migration_id: str, until=lambda m: m["ended_at"] is not None) -> dict:
    deadline = time.monotonic() + MIGRATION_TIMEOUT
    while True:
        migration = client.get(f"/apps/v3/application-migrations/{migration_id}/").json()
        if until(migration):
            return migration
        assert time.monotonic() < deadline, f"migration still {migration['status']} after {MIGRATION_TIMEOUT}s"
        time.sleep(0.5)


def migration_log(client: httpx.Client, migration_id: str) -> str:
    return client.get(f"/apps/v3/application-migrations/{migration_id}/logs").json()["logs"]


def test_a_cancelled_migration_leaves_the_source_as_it_was(region, second_region, moving):
    with second_region.owner.client() as client:
        started = migrate(client, moving, second_region.uuid)
        wait_for_migration(client, started["uuid"], until=lambda m: m["status"] in ("copying", "deploying"))
        cancelled = client.post(f"/apps/v3/application-migrations/{started['uuid']}/cancel/",
                                json={"reason": "changed my mind"})
        assert cancelled.status_code == 200, cancelled.text
        migration = wait_for_migration(client, started["uuid"])
        assert migration["status"] == "cancelled" and "changed my mind" in migration["error"], migration
        assert "Rolled back" in migration_log(client, started["uuid"])
        assert_source_serves_as_before(client, region, second_region, moving, "after the cancel")
        again = client.post(f"/apps/v3/application-migrations/{started['uuid']}/cancel/", json={})
        assert again.status_code == 409


def test_a_migration_whose_build_fails_in_the_target_leaves_the_source_serving(region, second_region, moving,
                                                                               notes_repo):
    """The target's builder cannot fetch the repository any more (the source built before)."""
    hidden = notes_repo.path.with_name("notes-hidden")
    notes_repo.path.rename(hidden)
    try:
        with second_region.owner.client() as client:
            started = migrate(client, moving, second_region.uuid)
            migration = wait_for_migration(client, started["uuid"])
            assert migration["status"] == "failure", migration
            assert "The deployment of environment test in the target failed" in migration["error"], migration["error"]
            assert "Rolled back" in migration_log(client, started["uuid"])
            assert_source_serves_as_before(client, region, second_region, moving, "after the failed migration")
    finally:
        hidden.rename(notes_repo.path)


def test_an_application_under_load_moves_without_a_failed_request_or_a_lost_write(region, second_region, moving):
    app, env_id = moving, moving["test_status"]["uuid"]
    with second_region.owner.client() as client:
        old_host = f"{app['slug']}-stage.{region.domain}"
        new_host = f"{app['slug']}-stage.{second_region.domain}"
        load = Load(region.ingress_url, old_host)
        load.start()
        try:
            time.sleep(2)
            started = migrate(client, app, second_region.uuid)
            assert started["status"] == "queued" and started["target_region"] == second_region.uuid
            migration = wait_for_migration(client, started["uuid"])
            time.sleep(2)  # and on, through the source's forwarding
        finally:
            load.stop()
        log = migration_log(client, started["uuid"])
        assert migration["status"] == "success", f"{migration['error']}\n{log}"
        print(f"\nmigration: {[(s['name'], s['started_at']) for s in migration['steps']]}")
        print(f"write pause: {migration['write_pause_ms']} ms; {load.requests} requests during the migration, "
              f"the slowest took {load.slowest:.2f} s; {len(load.acknowledged)} writes acknowledged")
        assert load.failures == [], load.failures[:10]
        assert load.acknowledged and migration["write_pause_ms"] is not None
        assert [s["name"] for s in migration["steps"]] == [
            "queued", "provisioning", "copying", "deploying", "cutting over", "finishing", "success"]
        assert "postgres://" not in log and "si_" not in log  # no credentials, no database names

        # Every acknowledged write is in the target's database, with its object in the target's bucket.
        target = type("Target", (), {"ingress_url": second_region.ingress_url})
        moved = notes(target, new_host)
        assert set(load.acknowledged) | {"before the migration"} <= set(moved["rows"])
        assert len(moved["objects"]) == len(moved["rows"])  # one object per row: none lost, none doubled
        # Writes go on in the target after the cut-over: the sequences were carried over.
        write(target, new_host, "after the migration")
        # The old address still works (forwarded by the source), and is the same application.
        assert notes(region, old_host)["rows"][-1] == "after the migration"

        # The data at the cut-over is backed up in the target before the source's copies may go.
        taken = wait_until(lambda: [b for b in client.get("/apps/v3/backups/", params={"environment": env_id})
                                    .json()["results"] if b["trigger"] == "MIGRATION" and b["state"] == "COMPLETED"],
                           what="the migration's backup completed")
        assert taken[0]["success"] == "SUCCESS" and len(taken[0]["service_instance_backups"]) == 2, taken

        moved_app = client.get(f"/apps/v3/applications/{app['uuid']}/").json()
        assert moved_app["region"] == second_region.uuid
        # The source's runners stop its instances (their desired state no longer has them).
        wait_until(lambda: (found := running_containers(env_id)) and all(
            c["Labels"]["regio.scope"].endswith(f"-{second_region.slug}") for c in found),
            what="the environment running in the target alone")
