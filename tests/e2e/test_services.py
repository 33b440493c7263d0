"""An environment's database and media storage on the region's own servers (the application
database cluster and SeaweedFS that `regio up` starts): provisioned by a deployment, their
DSNs injected, their data kept across deployments, and out of reach of other environments."""
import io
import subprocess
import tarfile
import time
import uuid

import httpx

from regio_common.layout import Layout
from regio_common.servers import PostgresCluster
from tests.e2e.test_runners import REGIO, STATE, wait_until
from tests.e2e.test_walking_skeleton import create_application, deploy, log_of


def services_of(client, region) -> dict[str, str]:
    offered = client.get("/apps/v3/services/", params={"region": region.region}).json()["results"]
    return {s["type"]: s["uuid"] for s in offered if s["identifier"] in ("postgres-18", "s3")}


def attach_both(client, region, env_id: str) -> dict[str, dict]:
    added = {}
    for kind, service in services_of(client, region).items():
        answer = client.post("/apps/v3/service-instances/", json={"environment": env_id, "service": service})
        assert answer.status_code == 201, answer.text
        assert answer.json()["service_status"] == "NEW"
        added[kind] = answer.json()
    return added


def notes(region, host: str) -> dict:
    answer = httpx.get(f"{region.ingress_url}/notes", headers={"Host": host}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def write(region, host: str, text: str) -> None:
    answer = httpx.post(f"{region.ingress_url}/notes", params={"text": text}, headers={"Host": host}, timeout=30)
    assert answer.status_code == 201, answer.text


def test_a_deployment_provisions_a_database_and_storage_that_keep_their_data(region, git_repo):
    repo = git_repo("notes")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        test_env, live_env = app["test_status"]["uuid"], app["live_status"]["uuid"]
        mine = attach_both(client, region, test_env)

        first = deploy(client, test_env)
        assert first["success"], log_of(client, first)
        log = log_of(client, first)
        provisioning = [line for line in log.splitlines() if "Provisioning" in line]
        assert "[regio] Provisioning: database service DEFAULT created on PostgreSQL 18 and attached" in provisioning
        assert any(line.startswith("[regio] Provisioning: storage service DEFAULT created on ")
                   for line in provisioning), provisioning
        assert "si_" not in log and "postgres://" not in log  # no names of credentials, no DSN
        states = client.get("/apps/v3/service-instances/", params={"environment": test_env}).json()["results"]
        assert {s["service_status"] for s in states} == {"ATTACHED"}
        variables = client.get(f"/apps/v3/deployments/{first['uuid']}/environment-variables").json()
        injected = {k: v for k, v in variables["environment_variables"].items() if k.endswith(("_DSN", "_URL"))}
        assert injected == {"DATABASE_URL": "********", "DEFAULT_DATABASE_DSN": "********",
                            "DEFAULT_STORAGE_DSN": "********"}  # credentials: masked like sensitive variables

        host = f"{app['slug']}-stage.{region.domain}"
        # The region's services are reached on their host; the platform's own servers on it are not.
        ports = Layout.load(STATE).ports
        reached = {port: httpx.get(f"{region.ingress_url}/reach", params={"port": port}, headers={"Host": host},
                                   timeout=30).json()["reached"]
                   for port in (ports.apps_postgres, ports.storage_s3, ports.postgres, ports.nats, ports.controlpanel)}
        assert reached == {ports.apps_postgres: True, ports.storage_s3: True, ports.postgres: False,
                           ports.nats: False, ports.controlpanel: False}
        write(region, host, "first note")
        assert notes(region, host) == {"rows": ["first note"], "objects": {"notes/0001.txt": "first note"},
                                       "database_url_is_default": True}

        again = deploy(client, test_env)
        assert again["success"], log_of(client, again)
        assert "Provisioning: database service DEFAULT is ATTACHED" in log_of(client, again)
        assert notes(region, host)["rows"] == ["first note"]  # a new release, the same data

        # Another environment gets its own database and bucket, and cannot touch these.
        attach_both(client, region, live_env)
        other = deploy(client, live_env)
        assert other["success"], log_of(client, other)
        live_host = f"{app['slug']}.{region.domain}"
        assert notes(region, live_host)["rows"] == []
        trespass = httpx.get(f"{region.ingress_url}/trespass", headers={"Host": live_host}, timeout=30, params={
            "database": f"si_{mine['DATABASE']['uuid'].replace('-', '')}",
            "bucket": f"si-{mine['STORAGE']['uuid'].replace('-', '')}"}).json()
        assert trespass["database"].startswith("refused") and "permission denied" in trespass["database"]
        assert trespass == {**trespass, "list": "refused: 403", "read": "refused: 403", "write": "refused: 403"}


DEDICATED_ORGANISATION = "Regio e2e: a dedicated database server"


def test_an_organisation_with_its_own_database_server_gets_its_databases_there(region, git_repo):
    with region.client() as client:
        # One such organisation for every run against this region: each has a server running.
        organisations = client.get("/iam/v3/organisations/", params={"page_size": 100}).json()["results"]
        organisation = next((o for o in organisations if o["name"] == DEDICATED_ORGANISATION), None) or \
            client.post("/iam/v3/organisations/", json={"name": DEDICATED_ORGANISATION}).json()
        added = subprocess.run([REGIO, "dedicated-database", organisation["uuid"]], capture_output=True, text=True,
                               timeout=300)
        assert added.returncode == 0, added.stderr

        repo = client.post("/apps/v3/repositories/", json={"organisation": organisation["uuid"],
                                                           "url": git_repo("notes").url}).json()
        app = client.post("/apps/v3/applications/", json={
            "name": "Dedicated", "slug": f"dedicated-{uuid.uuid4().hex[:6]}", "organisation": organisation["uuid"],
            "region": region.region, "repository": repo["uuid"], "branch": "main"}).json()
        region.applications.append(app["uuid"])
        env_id = app["test_status"]["uuid"]
        public = services_of(client, region)
        database = client.post("/apps/v3/service-instances/", json={"environment": env_id,
                                                                    "service": public["DATABASE"]}).json()
        storage = client.post("/apps/v3/service-instances/", json={"environment": env_id,
                                                                   "service": public["STORAGE"]}).json()
        dedicated = client.get(f"/apps/v3/services/{database['service']}/").json()
        assert database["service"] != public["DATABASE"] and "dedicated" in dedicated["name"]
        assert storage["service"] == public["STORAGE"]  # object storage stays the region's

        deployed = deploy(client, env_id)
        assert deployed["success"], log_of(client, deployed)
        host = f"{app['slug']}-stage.{region.domain}"
        write(region, host, "on our own server")
        assert notes(region, host)["rows"] == ["on our own server"]

    name = f"si_{database['uuid'].replace('-', '')}"
    layout = Layout.load(STATE)
    own = PostgresCluster(f"dedicated-postgres-{organisation['uuid'][:8]}", STATE,
                          layout.dedicated_databases[organisation["uuid"]])
    shared = PostgresCluster("apps-postgres", STATE, layout.ports.apps_postgres)
    assert databases_on(own) >= {name} and name not in databases_on(shared)


def databases_on(cluster: PostgresCluster) -> set[str]:
    listed = cluster.psql("select datname from pg_database", check=False)
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


def wait_completed(client, path: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get(path).json()
        if found["state"] == "COMPLETED":
            return found
        time.sleep(0.5)
    raise AssertionError(f"{path} still {found['state']} after {timeout}s")


def test_a_restore_brings_back_the_backed_up_notes_and_a_redeploy_keeps_them(region, git_repo):
    """The issue's story through the whole platform: the notes app deployed with a database and
    media storage writes, is backed up, writes more, is restored, and reads the backed-up
    state; a download link gives the same without credentials; a redeploy finds it intact."""
    repo = git_repo("notes")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        attach_both(client, region, env_id)
        first = deploy(client, env_id)
        assert first["success"], log_of(client, first)
        host = f"{app['slug']}-stage.{region.domain}"
        write(region, host, "before the backup")
        saved = notes(region, host)
        assert saved["rows"] == ["before the backup"]

        asked = client.post("/apps/v3/backups/", json={"environment": env_id, "notes": "e2e"})
        assert asked.status_code == 201, asked.text
        backup = wait_completed(client, f"/apps/v3/backups/{asked.json()['uuid']}/")
        assert backup["success"] == "SUCCESS", [client.get(f"/apps/v3/service-instance-backups/{p}/").json()
                                                for p in backup["service_instance_backups"]]

        write(region, host, "after the backup")
        assert notes(region, host)["rows"] == ["before the backup", "after the backup"]

        asked = client.post("/apps/v3/backup-restores/", json={"backup": backup["uuid"]})
        assert asked.status_code == 201, asked.text
        restored = wait_completed(client, f"/apps/v3/backup-restores/{asked.json()['uuid']}/")
        assert restored["success"] == "SUCCESS", restored["error"]
        assert notes(region, host) == saved  # the rows and objects of then, nothing written since

        link = client.post("/apps/v3/backup-downloads/", json={"backup": backup["uuid"]})
        assert link.status_code == 201, link.text
        archive = httpx.get(link.json()["download_url"], timeout=60)  # no credentials
        assert archive.status_code == 200, archive.text
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            assert "database-DEFAULT.dump" in tar.getnames()
            assert tar.extractfile("storage-DEFAULT/notes/0001.txt").read() == b"before the backup"

        again = deploy(client, env_id)
        assert again["success"], log_of(client, again)
        assert notes(region, host) == saved


def test_deleting_an_application_deletes_its_databases_and_buckets(region, git_repo):
    with region.client() as client:
        app = create_application(client, region, git_repo("notes").url)
        env_id = app["test_status"]["uuid"]
        mine = attach_both(client, region, env_id)
        deployed = deploy(client, env_id)
        assert deployed["success"], log_of(client, deployed)
        database = f"si_{mine['DATABASE']['uuid'].replace('-', '')}"
        shared = PostgresCluster("apps-postgres", STATE, Layout.load(STATE).ports.apps_postgres)
        assert database in databases_on(shared)

        assert client.delete(f"/apps/v3/applications/{app['uuid']}/").status_code == 204
    wait_until(lambda: database not in databases_on(shared), "the database deleted with its application", timeout=60)
