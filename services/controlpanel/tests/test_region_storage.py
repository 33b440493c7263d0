"""The region's object storage against a real SeaweedFS (one per module): a bucket's key
reaches its bucket and nothing else, deleting revokes it and the objects, backups copy
out and restore back, presigned URLs download without credentials until they expire."""
import asyncio
import os
import uuid

import httpx
import pytest

from regio_common.processes import port_open
from regio_common.servers import seaweedfs_admin_file, wait_seaweedfs_ready
from regio_controlpanel.region_services.storage import Credentials, ObjectStorage, StorageError


@pytest.fixture(scope="module")
async def admin(storage) -> ObjectStorage:
    async with ObjectStorage(storage.endpoint, storage.admin_credentials()) as client:
        yield client


@pytest.fixture
async def environment_bucket(admin, storage):
    """A new bucket with its key, and a client acting with that key (as the app does)."""
    name = f"env-{uuid.uuid4().hex[:12]}"
    key = await admin.create_bucket_with_key(name)
    async with ObjectStorage(storage.endpoint, key) as app:
        yield name, key, app


def bucket_name() -> str:
    return f"env-{uuid.uuid4().hex[:12]}"


async def test_admin_secret_is_private_to_the_region(storage):
    assert os.stat(seaweedfs_admin_file(storage.state_dir)).st_mode & 0o777 == 0o600


async def test_requests_without_a_valid_signature_are_refused(admin, storage):
    bucket = bucket_name()
    await admin.ensure_bucket(bucket)
    await admin.put_object(bucket, "private.txt", b"secret")
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{storage.endpoint}/{bucket}/private.txt")).status_code == 403
        assert (await anonymous.put(f"{storage.endpoint}/{bucket}/x", content=b"x")).status_code == 403
    wrong = Credentials(storage.admin_credentials().access_key, "not-the-secret")
    async with ObjectStorage(storage.endpoint, wrong) as forger:
        with pytest.raises(StorageError) as refused:
            await forger.get_object(bucket, "private.txt")
    assert refused.value.status == 403


async def test_a_new_key_writes_reads_lists_and_deletes_in_its_bucket_at_once(environment_bucket):
    bucket, _, app = environment_bucket
    # No wait between making the key and using it: the gateway knows it when the call returns.
    await app.put_object(bucket, "media/photo.jpg", b"jpeg bytes", "image/jpeg")
    await app.put_object(bucket, "static/app.css", b"body {}")
    assert await app.get_object(bucket, "media/photo.jpg") == b"jpeg bytes"
    assert [o.key for o in await app.list_objects(bucket)] == ["media/photo.jpg", "static/app.css"]
    assert [o.key for o in await app.list_objects(bucket, "media/")] == ["media/photo.jpg"]
    await app.delete_objects(bucket, ["static/app.css"])
    assert [(o.key, o.size) for o in await app.list_objects(bucket)] == [("media/photo.jpg", 10)]


async def test_a_key_is_refused_on_another_bucket(admin, environment_bucket):
    _, _, app = environment_bucket
    other = bucket_name()
    await admin.ensure_bucket(other)
    await admin.put_object(other, "theirs.txt", b"not yours")
    for attempt in (app.get_object(other, "theirs.txt"), app.put_object(other, "mine.txt", b"x"),
                    app.list_objects(other), app.delete_objects(other, ["theirs.txt"])):
        with pytest.raises(StorageError) as refused:
            await attempt
        assert refused.value.status == 403
    assert await admin.get_object(other, "theirs.txt") == b"not yours"
    assert [o.key for o in await admin.list_objects(other)] == ["theirs.txt"]


async def test_a_key_cannot_create_or_delete_buckets(admin, environment_bucket):
    bucket, _, app = environment_bucket
    new = bucket_name()
    with pytest.raises(StorageError) as refused:
        await app.ensure_bucket(new)
    assert refused.value.status == 403
    with pytest.raises(StorageError) as refused:
        await app.put_object(new, "auto-created?.txt", b"x")  # admins may create buckets by upload; keys may not
    assert refused.value.status in (403, 404)
    with pytest.raises(StorageError) as refused:
        await app.delete_bucket(bucket)
    assert refused.value.status == 403
    with pytest.raises(StorageError) as gone:
        await admin.list_objects(new)
    assert gone.value.code == "NoSuchBucket"


async def test_deleting_revokes_the_key_and_the_objects(admin, environment_bucket):
    bucket, key, app = environment_bucket
    await app.put_object(bucket, "a.txt", b"a")
    await app.put_object(bucket, "b/c.txt", b"c")
    await admin.delete_bucket_and_key(bucket, key.access_key)
    with pytest.raises(StorageError) as refused:
        await app.get_object(bucket, "a.txt")
    assert refused.value.status == 403
    with pytest.raises(StorageError) as gone:
        await admin.list_objects(bucket)
    assert gone.value.code == "NoSuchBucket"
    # A bucket made again under the same name starts empty, and deleting twice is harmless.
    await admin.delete_bucket_and_key(bucket, key.access_key)
    again = await admin.create_bucket_with_key(bucket)
    assert await admin.list_objects(bucket) == []
    await admin.delete_bucket_and_key(bucket, again.access_key)


async def test_backup_and_restore_round_trip(admin, environment_bucket):
    bucket, _, app = environment_bucket
    backups = f"backups-{uuid.uuid4().hex[:8]}"
    await admin.ensure_bucket(backups)
    originals = {"index.html": b"<h1>v1</h1>", "media/2024/photo one.jpg": b"jpeg",
                 "media/ünïcode+signs&=.txt": "é".encode()}
    for key, body in originals.items():
        await app.put_object(bucket, key, body)

    assert await admin.copy_bucket(bucket, backups, "backup-1") == 3
    assert sorted(o.key for o in await admin.list_objects(backups)) == sorted(f"backup-1/{k}" for k in originals)

    # The app carries on: changes one object, deletes one, adds one.
    await app.put_object(bucket, "index.html", b"<h1>v2</h1>")
    await app.delete_objects(bucket, ["media/2024/photo one.jpg"])
    await app.put_object(bucket, "after-backup.txt", b"new")

    assert await admin.restore_prefix(backups, "backup-1", bucket) == 3
    assert sorted(o.key for o in await app.list_objects(bucket)) == sorted(originals)
    for key, body in originals.items():
        assert await app.get_object(bucket, key) == body
    # The backup itself is untouched, and can be removed.
    assert len(await admin.list_objects(backups, "backup-1/")) == 3
    assert await admin.delete_prefix(backups, "backup-1") == 3
    assert await admin.list_objects(backups) == []


async def test_a_file_is_uploaded_streamed_from_disk(admin, tmp_path):
    """How a backup's dump goes up: read as it is sent, signed by a hash of a first reading."""
    bucket = bucket_name()
    await admin.ensure_bucket(bucket)
    dump = tmp_path / "dump"
    content = os.urandom(3 * 1024 * 1024 + 17)  # more than one read of the file
    dump.write_bytes(content)

    assert await admin.put_file(bucket, "backups/x/part.dump", dump, "application/octet-stream") == len(content)
    assert await admin.get_object(bucket, "backups/x/part.dump") == content


async def test_a_presigned_url_downloads_without_credentials_until_it_expires(admin, storage):
    backups = f"backups-{uuid.uuid4().hex[:8]}"
    await admin.ensure_bucket(backups)
    await admin.put_object(backups, "backup-1/media/photo one.jpg", b"jpeg bytes", "image/jpeg")
    url = admin.presigned_get_url(backups, "backup-1/media/photo one.jpg", expires_seconds=3)
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
        assert response.status_code == 200
        assert response.content == b"jpeg bytes"
        assert (await browser.get(url.split("?")[0])).status_code == 403
        for _ in range(100):  # polled, not timed: it must stop working once expired
            response = await browser.get(url)
            if response.status_code != 200:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 403


async def test_keys_and_objects_survive_a_restart(admin, environment_bucket, storage):
    bucket, _, app = environment_bucket
    await app.put_object(bucket, "kept.txt", b"kept")
    storage.process.stop(timeout=1)
    for _ in range(100):  # stop() does not wait for the SIGKILL it may end with to land
        if not port_open(storage.s3_port):
            break
        await asyncio.sleep(0.05)
    storage.process.start()
    await asyncio.to_thread(wait_seaweedfs_ready, storage.s3_port, storage.master_port, process=storage.process)
    assert await app.get_object(bucket, "kept.txt") == b"kept"
    await app.put_object(bucket, "after-restart.txt", b"ok")
    assert [o.key for o in await admin.list_objects(bucket)] == ["after-restart.txt", "kept.txt"]


async def test_a_frozen_bucket_is_read_but_not_written_with_its_key_until_thawed(admin, environment_bucket):
    """A migration's cut-over freezes the source's bucket (as its database): what its key
    writes after the last sync would be lost."""
    bucket, _, app = environment_bucket
    await app.put_object(bucket, "before.txt", b"kept")
    await admin.set_bucket_writable(bucket, False)
    for write in (app.put_object(bucket, "during.txt", b"lost"), app.delete_objects(bucket, ["before.txt"])):
        with pytest.raises(StorageError) as refused:
            await write
        assert refused.value.status == 403
    assert await app.get_object(bucket, "before.txt") == b"kept"
    assert [o.key for o in await app.list_objects(bucket)] == ["before.txt"]
    await admin.set_bucket_writable(bucket, True)
    await app.put_object(bucket, "after.txt", b"written")
    assert [o.key for o in await app.list_objects(bucket)] == ["after.txt", "before.txt"]
