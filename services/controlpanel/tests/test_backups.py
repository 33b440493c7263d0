"""Backups, restores and download links of environments' databases and buckets, against a
real application database cluster and a real SeaweedFS registered as the test region's
servers: the API asks, the control panel's own consumer does the work, and what comes
back is the backed-up state, in the environment itself or in another one."""
import asyncio
import io
import json
import subprocess
import tarfile
import uuid
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import utcnow
from regio_common.servers import PostgresCluster
from regio_common.testing.plugin import free_port
from regio_controlpanel.db.models import AuditEvent, Backup, BackupDownload, Service, ServiceInstance
from regio_controlpanel.domain.service_instances import State
from regio_controlpanel.region_services.storage import Credentials, ObjectStorage
from regio_controlpanel.services import catalogue, provisioning
from regio_controlpanel.services.crypto import Vault

TIMEOUT = 90.0


@pytest.fixture
async def db(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def vault(settings) -> Vault:
    return Vault(settings.secrets_key, settings.region_key)


def real_servers(apps_cluster, storage) -> dict[str, dict]:
    admin = storage.admin_credentials()
    return {"postgres-18": {"admin_url": apps_cluster.url(), "host": "127.0.0.1", "port": apps_cluster.port},
            "s3": {"endpoint": storage.endpoint, "access_key": admin.access_key, "secret_key": admin.secret_key,
                   "host": "127.0.0.1", "port": storage.s3_port}}


async def register(db, vault, region: str, servers: dict[str, dict]) -> None:
    async with db() as session, session.begin():
        await catalogue.register_servers(session, vault, uuid.UUID(region), servers)


@pytest.fixture
async def servers(db, vault, seeded, apps_cluster, storage):
    """The test region's database and storage services run on this module's real servers
    (other modules register others: each test registers these again)."""
    await register(db, vault, seeded["region"], real_servers(apps_cluster, storage))
    return apps_cluster, storage


class Data:
    """An environment's database and bucket, used with its own credentials as its app would."""

    def __init__(self, cluster: PostgresCluster, storage, instances: dict[str, dict], credentials: dict[str, dict]):
        self.cluster, self.storage = cluster, storage
        self.instances, self.credentials = instances, credentials

    async def _db(self) -> asyncpg.Connection:
        c = self.credentials["DATABASE"]
        return await asyncpg.connect(host="127.0.0.1", port=self.cluster.port, user=c["role"], password=c["password"],
                                     database=c["database"])

    def _bucket(self) -> ObjectStorage:
        c = self.credentials["STORAGE"]
        return ObjectStorage(self.storage.endpoint, Credentials(c["access_key"], c["secret_key"]))

    async def write(self, text: str, key: str | None = None) -> None:
        conn = await self._db()
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
            number = await conn.fetchval("INSERT INTO notes (text) VALUES ($1) RETURNING id", text)
        finally:
            await conn.close()
        async with self._bucket() as bucket:
            await bucket.put_object(self.credentials["STORAGE"]["bucket"], key or f"notes/{number:04d}.txt",
                                    text.encode())

    async def sql(self, statement: str):
        conn = await self._db()
        try:
            return await conn.fetch(statement)
        finally:
            await conn.close()

    async def rows(self) -> list[str]:
        return [r["text"] for r in await self.sql("SELECT text FROM notes ORDER BY id")]

    async def tables(self) -> set[str]:
        return {r["tablename"] for r in await self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    async def objects(self) -> dict[str, str]:
        bucket_name = self.credentials["STORAGE"]["bucket"]
        async with self._bucket() as bucket:
            return {o.key: (await bucket.get_object(bucket_name, o.key)).decode()
                    for o in await bucket.list_objects(bucket_name)}


async def usable_services(api, env_id: str) -> dict[str, str]:
    """The region's database and storage services, by type, as the environment's application may
    use them (other test modules add regions of their own)."""
    application = (await api.get(f"/apps/v3/environments/{env_id}/")).json()["application"]
    offered = (await api.get("/apps/v3/services/", params={"website": application, "page_size": 100})).json()
    return {s["type"]: s["uuid"] for s in offered["results"] if s["identifier"] in ("postgres-18", "s3")}


async def provisioned(api, db, vault, servers, env_id: str) -> Data:
    """The environment's DEFAULT database and storage, created on the servers as a
    deployment's provisioning step does, and attached."""
    offered = await usable_services(api, env_id)
    instances, credentials = {}, {}
    for kind in ("DATABASE", "STORAGE"):
        added = await api.post("/apps/v3/service-instances/", json={"environment": env_id, "service": offered[kind]})
        assert added.status_code == 201, added.text
        instances[kind] = added.json()
        async with db() as session, session.begin():
            instance = await session.get(ServiceInstance, uuid.UUID(added.json()["uuid"]))
            service = await session.get(Service, instance.service_id)
            credentials[kind] = await provisioning.provision(service, provisioning.server_of(service, vault), instance)
            instance.credentials_encrypted = vault.encrypt(json.dumps(credentials[kind]))
            instance.state = State.ATTACHED
    return Data(*servers, instances, credentials)


async def finished(api, path: str) -> dict:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        found = (await api.get(path)).json()
        if found["state"] == "COMPLETED":
            return found
        assert found["state"] in ("PENDING", "WORKING"), found
        assert asyncio.get_running_loop().time() < deadline, f"still {found['state']}: {found}"
        await asyncio.sleep(0.2)


async def back_up(api, env_id: str, **fields) -> dict:
    response = await api.post("/apps/v3/backups/", json={"environment": env_id, **fields})
    assert response.status_code == 201, response.text
    return await finished(api, f"/apps/v3/backups/{response.json()['uuid']}/")


async def restore(api, backup: dict, **fields) -> dict:
    response = await api.post("/apps/v3/backup-restores/", json={"backup": backup["uuid"], **fields})
    assert response.status_code == 201, response.text
    return await finished(api, f"/apps/v3/backup-restores/{response.json()['uuid']}/")


async def parts(api, backup: dict) -> dict[str, dict]:
    found = [(await api.get(f"/apps/v3/service-instance-backups/{p}/")).json()
             for p in backup["service_instance_backups"]]
    return {p["type"]: p for p in found}


async def audited(db, action: str, target: str) -> AuditEvent | None:
    async with db() as session:
        return (await session.execute(select(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.target_id == uuid.UUID(target)))).scalar_one_or_none()


# --- backup and restore ---------------------------------------------------------------------------


async def test_a_restore_brings_back_the_backed_up_rows_and_objects_and_drops_what_came_after(
        api, application, db, vault, servers):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("first note")

    response = await api.post("/apps/v3/backups/", json={"environment": env, "notes": "before the import"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in ("environment", "state", "success", "trigger", "notes", "ended_at")} == {
        "environment": env, "state": "PENDING", "success": None, "trigger": "MANUAL", "notes": "before the import",
        "ended_at": None}
    assert len(created["service_instance_backups"]) == 2
    backup = await finished(api, f"/apps/v3/backups/{created['uuid']}")
    assert backup["success"] == "SUCCESS" and backup["ended_at"] is not None, backup
    kept = await parts(api, backup)
    for kind, part in kept.items():
        assert {k: part[k] for k in ("backup", "service_instance", "type", "service_type", "prefix", "state",
                                     "success", "error")} == {
            "backup": backup["uuid"], "service_instance": data.instances[kind]["uuid"], "type": kind,
            "service_type": kind, "prefix": "DEFAULT", "state": "COMPLETED", "success": "SUCCESS", "error": None}
        assert part["size"] > 0
    assert kept["STORAGE"]["size"] == len("first note")

    # What the application does after the backup...
    await data.write("second note")
    await data.write("first note, changed", key="notes/0001.txt")
    await data.sql("CREATE TABLE later (id int)")
    assert await data.rows() == ["first note", "second note", "first note, changed"]

    restored = await restore(api, backup)
    assert {k: restored[k] for k in ("backup", "environment", "success", "error")} == {
        "backup": backup["uuid"], "environment": env, "success": "SUCCESS", "error": None}
    assert sorted(restored["service_instance_backups"]) == sorted(backup["service_instance_backups"])

    # ...is gone: the database and the bucket hold what they held then, nothing more.
    assert await data.rows() == ["first note"]
    assert await data.tables() == {"notes"}
    assert await data.objects() == {"notes/0001.txt": "first note"}
    await data.write("written after the restore")  # the environment's own credentials still work
    assert await data.rows() == ["first note", "written after the restore"]

    assert await audited(db, "backup.create", backup["uuid"])
    assert await audited(db, "backup_restore.create", restored["uuid"])


async def test_backups_are_listed_newest_first_and_can_name_their_instances(api, application, db, vault, servers):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("a note")

    everything = await back_up(api, env)
    database_only = await back_up(api, env, services=[data.instances["DATABASE"]["uuid"]], trigger="SCHEDULED")

    assert list((await parts(api, database_only)).keys()) == ["DATABASE"]
    assert database_only["trigger"] == "SCHEDULED"
    listed = (await api.get("/apps/v3/backups/", params={"environment": env})).json()
    assert listed["count"] == 2
    assert [b["uuid"] for b in listed["results"]] == [database_only["uuid"], everything["uuid"]]
    assert listed["results"][0] == database_only


async def test_a_backup_restores_into_another_environment_of_the_organisation(api, application, db, vault, servers):
    test_env, live_env = application["test_status"]["uuid"], application["live_status"]["uuid"]
    source = await provisioned(api, db, vault, servers, test_env)
    target = await provisioned(api, db, vault, servers, live_env)
    await source.write("from stage")
    await target.write("live data that the restore replaces", key="live-only.txt")
    backup = await back_up(api, test_env)

    restored = await restore(api, backup, environment=live_env)

    assert restored["success"] == "SUCCESS" and restored["environment"] == live_env, restored
    assert await target.rows() == ["from stage"]
    assert await target.objects() == {"notes/0001.txt": "from stage"}
    await target.write("live goes on")  # the tables are the live environment's own now
    assert await target.rows() == ["from stage", "live goes on"]
    assert await source.rows() == ["from stage"]  # the backed-up environment is untouched


# --- downloads --------------------------------------------------------------------------------


@pytest.fixture
async def anonymous(app):
    """A client without credentials, as a browser following a download link."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        yield client


def local(url: str, settings) -> str:
    assert url.startswith(f"{settings.public_url}/downloads/"), url
    return url.removeprefix(settings.public_url)


async def test_a_download_link_gives_the_dump_and_the_objects_without_credentials(
        api, anonymous, application, db, vault, servers, settings, tmp_path):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("downloadable")
    await data.write("a photo", key="media/photo.jpg")
    backup = await back_up(api, env)
    kept = await parts(api, backup)

    database = await api.post("/apps/v3/backup-downloads/", json={
        "backup": backup["uuid"], "service_instance_backups": [kept["DATABASE"]["uuid"]], "trigger": "MANUAL"})
    assert database.status_code == 201, database.text
    link = database.json()
    assert link["service_instance_backups"] == [kept["DATABASE"]["uuid"]]
    lifetime = datetime.fromisoformat(link["expires_at"]) - datetime.fromisoformat(link["created_at"])
    assert lifetime == timedelta(hours=1)
    token = link["download_url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert (await api.get(f"/apps/v3/backup-downloads/{link['uuid']}/")).json() == link

    answer = await anonymous.get(local(link["download_url"], settings))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].endswith("-default-database.dump")
    assert int(answer.headers["content-length"]) == kept["DATABASE"]["size"] == len(answer.content)
    dump = tmp_path / "backup.dump"
    dump.write_bytes(answer.content)
    listed = subprocess.run([PostgresCluster.bin("pg_restore"), "--list", str(dump)], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "TABLE public notes" in listed.stdout and "TABLE DATA public notes" in listed.stdout

    everything = (await api.post("/apps/v3/backup-downloads/", json={"backup": backup["uuid"]})).json()
    assert sorted(everything["service_instance_backups"]) == sorted(backup["service_instance_backups"])
    archive = await anonymous.get(local(everything["download_url"], settings))
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/x-tar"
    assert int(archive.headers["content-length"]) == len(archive.content)
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert sorted(tar.getnames()) == ["database-DEFAULT.dump", "storage-DEFAULT/media/photo.jpg",
                                          "storage-DEFAULT/notes/0001.txt"]
        assert tar.extractfile("storage-DEFAULT/media/photo.jpg").read() == b"a photo"
        assert tar.extractfile("database-DEFAULT.dump").read() == answer.content

    # Each part also has a link of its own: the storage's is a tar of its objects at their keys.
    each = {d["service_instance_backup"]: d["download_url"] for d in everything["downloads"]}
    objects = await anonymous.get(local(each[kept["STORAGE"]["uuid"]], settings))
    assert objects.status_code == 200, objects.text
    with tarfile.open(fileobj=io.BytesIO(objects.content)) as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == {
            "media/photo.jpg": b"a photo", "notes/0001.txt": b"downloadable"}

    assert await audited(db, "backup_download.create", link["uuid"])


async def test_the_official_clients_pull_finds_the_parts_url(api, anonymous, application, db, vault, servers,
                                                            settings):
    """What `divio app pull db` asks (divio-cli 4.0.5, localdev/backups.py and cloud.py): a link with
    trigger PULL, its parts listed by ?backup=<link>, then the first polled (no slash) until ended_at."""
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("pulled")
    backup = await back_up(api, env)
    kept = await parts(api, backup)
    link = (await api.post("/apps/v3/backup-downloads/", json={
        "backup": backup["uuid"], "service_instance_backups": [kept["DATABASE"]["uuid"]], "trigger": "PULL"})).json()

    listed = (await api.get("/apps/v3/backup-download-service-instances/", params={"backup": link["uuid"]})).json()
    assert listed["count"] == 1
    (part,) = listed["results"]
    polled = (await api.get(f"/apps/v3/backup-download-service-instances/{part['uuid']}")).json()
    assert polled["ended_at"] and polled["errors"] is None and polled["service_instance_backup"] == kept["DATABASE"]["uuid"]
    assert polled["download_url"] == link["downloads"][0]["download_url"]
    dump = await anonymous.get(local(polled["download_url"], settings))
    assert dump.status_code == 200 and int(dump.headers["content-length"]) == kept["DATABASE"]["size"]


async def test_deleting_the_application_deletes_its_backups_files(api, application, db, vault, servers):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("to be forgotten")
    backup = await back_up(api, env)
    folder = f"backups/{backup['uuid']}/"
    _, storage = servers
    async with ObjectStorage(storage.endpoint, storage.admin_credentials()) as admin:
        assert await admin.list_objects("regio-backups", folder)  # the dump and the bucket's copy

        assert (await api.delete(f"/apps/v3/applications/{application['uuid']}/")).status_code == 204
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while await admin.list_objects("regio-backups", folder):
            assert asyncio.get_running_loop().time() < deadline, "the backup's files are still there"
            await asyncio.sleep(0.2)


async def test_an_expired_or_wrong_link_is_not_found(api, anonymous, application, db, vault, servers, settings):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("short-lived")
    backup = await back_up(api, env)
    link = (await api.post("/apps/v3/backup-downloads/", json={"backup": backup["uuid"]})).json()
    path = local(link["download_url"], settings)
    assert (await anonymous.get(path)).status_code == 200

    for wrong in (path[:-1] + ("A" if path[-1] != "A" else "B"), "/downloads/" + "x" * 43, "/downloads/",
                  f"{path}/{uuid.uuid4()}", f"{path}/not-a-uuid"):
        answer = await anonymous.get(wrong)
        assert answer.status_code == 404, (wrong, answer.text)
    async with db() as session, session.begin():
        download = await session.get(BackupDownload, uuid.UUID(link["uuid"]))
        download.expires_at = utcnow() - timedelta(seconds=1)
    expired = await anonymous.get(path)
    assert expired.status_code == 404 and expired.json() == {"detail": "Not found."}
    assert token_not_stored(await stored_download(db, link["uuid"]), path.rsplit("/", 1)[1])


async def stored_download(db, download_id: str) -> BackupDownload:
    async with db() as session:
        return await session.get(BackupDownload, uuid.UUID(download_id))


def token_not_stored(download: BackupDownload, token: str) -> bool:
    return token not in (download.token_hash, download.token_encrypted) and len(download.token_hash) == 64


# --- failures and bad input ---------------------------------------------------------------------


async def test_a_server_that_refuses_fails_its_part_with_the_reason_and_no_credentials(
        api, application, db, vault, servers, seeded):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("kept in the bucket")
    cluster, storage = servers
    broken = real_servers(cluster, storage)
    broken["postgres-18"]["admin_url"] = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/postgres"
    await register(db, vault, seeded["region"], broken)

    backup = await back_up(api, env)

    assert backup["success"] == "FAILURE", backup
    kept = await parts(api, backup)
    assert kept["STORAGE"]["success"] == "SUCCESS"
    failed = kept["DATABASE"]
    assert failed["success"] == "FAILURE" and failed["state"] == "COMPLETED" and failed["size"] is None
    assert failed["error"] and failed["errors"] == failed["error"]
    assert "pg_dump" in failed["error"] and "Connection refused" in failed["error"]
    assert "s3cret-pw" not in failed["error"] and data.credentials["DATABASE"]["password"] not in failed["error"]

    # What failed cannot be used; what succeeded can.
    for path in ("/apps/v3/backup-restores/", "/apps/v3/backup-downloads/"):
        refused = await api.post(path, json={"backup": backup["uuid"], "service_instance_backups": [failed["uuid"]]})
        assert refused.status_code == 409 and "succeeded" in refused.json()["non_field_errors"][0], refused.text
    await register(db, vault, seeded["region"], real_servers(cluster, storage))
    await data.write("after", key="after.txt")
    restored = await restore(api, backup)
    assert restored["success"] == "SUCCESS" and restored["service_instance_backups"] == [kept["STORAGE"]["uuid"]]
    assert await data.objects() == {"notes/0001.txt": "kept in the bucket"}
    assert await data.rows() == ["kept in the bucket", "after"]  # the database was not part of it


async def test_bad_input_names_the_field(api, application, db, vault, servers, seeded):
    test_env, live_env = application["test_status"]["uuid"], application["live_status"]["uuid"]
    nothing = await api.post("/apps/v3/backups/", json={"environment": test_env})
    assert nothing.status_code == 400 and "no provisioned service instance" in nothing.json()["services"][0]

    data = await provisioned(api, db, vault, servers, test_env)
    await data.write("x")
    offered = await usable_services(api, test_env)
    new = (await api.post("/apps/v3/service-instances/", json={
        "environment": test_env, "service": offered["DATABASE"], "prefix": "EXTRA"})).json()
    elsewhere = (await api.post("/apps/v3/service-instances/", json={
        "environment": live_env, "service": offered["DATABASE"]})).json()
    for services, reason in (([new["uuid"]], "is NEW"), ([elsewhere["uuid"]], "not a service instance of this"),
                             ([str(uuid.uuid4())], "not a service instance of this"), ([], "at least one")):
        refused = await api.post("/apps/v3/backups/", json={"environment": test_env, "services": services})
        assert refused.status_code == 400 and reason in refused.json()["services"][0], refused.text
    assert (await api.post("/apps/v3/backups/", json={"environment": test_env, "trigger": "now!"})).json() == {
        "trigger": ["Uppercase letters and underscores, e.g. MANUAL."]}
    assert (await api.post("/apps/v3/backups/", json={"environment": str(uuid.uuid4())})).json() == {
        "environment": ["Environment not found."]}

    backup = await back_up(api, test_env)
    # The live environment's database is NEW and it has no storage: nothing to restore into.
    refused = await api.post("/apps/v3/backup-restores/", json={"backup": backup["uuid"], "environment": live_env})
    assert refused.status_code == 400 and "no provisioned database service DEFAULT" in refused.json()["environment"][0]
    other = await back_up(api, test_env, services=[data.instances["STORAGE"]["uuid"]])
    mixed = await api.post("/apps/v3/backup-restores/", json={
        "backup": backup["uuid"], "service_instance_backups": other["service_instance_backups"]})
    assert mixed.status_code == 400 and "service_instance_backups" in mixed.json()
    assert (await api.post("/apps/v3/backup-restores/", json={"backup": str(uuid.uuid4())})).json() == {
        "backup": ["Backup not found."]}

    async with db() as session, session.begin():  # as while the consumer works on it
        (await session.get(Backup, uuid.UUID(backup["uuid"]))).state = "WORKING"
    for path in ("/apps/v3/backup-restores/", "/apps/v3/backup-downloads/"):
        busy = await api.post(path, json={"backup": backup["uuid"]})
        assert busy.status_code == 409 and "COMPLETED" in busy.json()["non_field_errors"][0], busy.text


async def test_a_stranger_sees_none_of_it(api, stranger, application, db, vault, servers):
    env = application["test_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("private")
    backup = await back_up(api, env)
    restored = await restore(api, backup)
    link = (await api.post("/apps/v3/backup-downloads/", json={"backup": backup["uuid"]})).json()

    (part,) = (await api.get("/apps/v3/backup-download-service-instances/",
                             params={"backup": link["uuid"], "page_size": 1})).json()["results"]
    for path in (f"/apps/v3/backups/{backup['uuid']}/", f"/apps/v3/backup-restores/{restored['uuid']}/",
                 f"/apps/v3/backup-downloads/{link['uuid']}/", f"/apps/v3/backup-download-service-instances/{part['uuid']}/",
                 f"/apps/v3/backup-download-service-instances/?backup={link['uuid']}",
                 *(f"/apps/v3/service-instance-backups/{p}/" for p in backup["service_instance_backups"])):
        assert (await stranger.get(path)).status_code == 404, path
    assert (await stranger.get("/apps/v3/backups/", params={"environment": env})).json()["count"] == 0
    assert (await stranger.post("/apps/v3/backups/", json={"environment": env})).json() == {
        "environment": ["Environment not found."]}
    for path in ("/apps/v3/backup-restores/", "/apps/v3/backup-downloads/"):
        assert (await stranger.post(path, json={"backup": backup["uuid"]})).json() == {"backup": ["Backup not found."]}
    assert await data.rows() == ["private"]
