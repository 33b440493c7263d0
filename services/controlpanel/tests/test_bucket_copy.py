"""A migration's media copy between two real SeaweedFS (two regions' object storage): every
object arrives with its bytes, content type and metadata, an object uploaded in parts keeps
its ETag, a second call copies only what changed, deletions follow, nothing of another
bucket is touched, memory stays bounded whatever an object's size, and errors carry no
secret key."""
import gzip
import hashlib
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import pytest

from regio_common.testing.plugin import free_port
from regio_controlpanel.region_services import bucket_copy
from regio_controlpanel.region_services.bucket_copy import BucketSync, BucketSyncFailed, sync_bucket
from regio_controlpanel.region_services.storage import ObjectStorage
from regio_controlpanel.services.provisioning import StorageServer

from .region_servers import other_storage  # noqa: F401  (a second region's storage)

MB = 1024 * 1024


def server(storage) -> StorageServer:
    access_key, secret_key = storage.admin_credentials()
    return StorageServer(endpoint=storage.endpoint, access_key=access_key, secret_key=secret_key,
                         host="127.0.0.1", port=storage.s3_port)


@pytest.fixture(scope="module")
def source(storage) -> StorageServer:
    return server(storage)


@pytest.fixture(scope="module")
def target(other_storage) -> StorageServer:  # noqa: F811
    return server(other_storage)


async def new_bucket(at: StorageServer) -> str:
    name = f"si-{uuid.uuid4().hex[:16]}"
    async with at.client() as client:
        await client.ensure_bucket(name)
    return name


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def put_in_parts(client: ObjectStorage, bucket: str, key: str, parts: list[bytes],
                       headers: dict[str, str] | None = None) -> str:
    """As boto3 uploads a large file (django-storages' media): in parts."""
    upload_id = await client.start_upload(bucket, key, headers)
    etags = [await client.upload_part(bucket, key, upload_id, n, one_chunk(p), len(p))
             for n, p in enumerate(parts, 1)]
    return await client.complete_upload(bucket, key, upload_id, etags)


async def contents(at: StorageServer, bucket: str) -> dict[str, tuple[int, str, str]]:
    """key -> (size, ETag, MD5 of the bytes read back)."""
    async with at.client() as client:
        return {o.key: (o.size, o.etag, hashlib.md5(await client.get_object(bucket, o.key)).hexdigest())
                for o in await client.list_objects(bucket)}


async def stored_headers(at: StorageServer, bucket: str, key: str) -> dict[str, str]:
    async with at.client() as client, client.open_object(bucket, key) as download:
        return download.stored_headers


async def test_every_object_arrives_with_its_bytes_type_and_metadata(source, target):
    src, dst = await new_bucket(source), await new_bucket(target)
    big = os.urandom(17 * MB + 3)  # more than 16 MB in one piece
    css_gz = gzip.compress(b"body { color: red }" * 1000)
    parts = [os.urandom(6 * MB), os.urandom(6 * MB), os.urandom(5 * MB + 11)]
    async with source.client() as client:
        await client.put_object(src, "empty", b"")
        await client.put_object(src, "media/photo.jpg", os.urandom(300 * 1024), "image/jpeg")
        await client.put_object(src, "media/a name with spaces & ünicode.txt", b"hello", "text/plain")
        await client.put_object(src, "media/a+b=c?d#e%20f.txt", b"data")  # characters URLs give meaning to
        await client.put_object(src, "media/folder/", b"")  # a folder as S3 consoles make them
        await client.put_stream(src, "static/app.css", one_chunk(css_gz), len(css_gz),
                                {"content-type": "text/css", "content-encoding": "gzip"})  # copied as stored
        await client.put_stream(src, "media/big.bin", one_chunk(big), len(big),
                                {"content-type": "application/zip", "x-amz-meta-uploaded-by": "alice",
                                 "cache-control": "max-age=60", "content-disposition": "attachment"})
        multipart_etag = await put_in_parts(client, src, "media/video.mp4", parts, {"content-type": "video/mp4"})
    assert multipart_etag.endswith("-3")

    result = await sync_bucket(source, src, target, dst)

    assert result == BucketSync(
        copied=8, deleted=0, bytes=300 * 1024 + 5 + 4 + len(css_gz) + len(big) + sum(map(len, parts)), objects=8)
    assert await contents(target, dst) == await contents(source, src)
    assert (await contents(target, dst))["media/video.mp4"][1] == multipart_etag  # the same parts
    assert hashlib.md5(b"".join(parts)).hexdigest() == (await contents(target, dst))["media/video.mp4"][2]
    big_headers = await stored_headers(target, dst, "media/big.bin")
    assert big_headers["content-type"] == "application/zip"
    assert big_headers["x-amz-meta-uploaded-by"] == "alice"
    assert big_headers["cache-control"] == "max-age=60"
    assert big_headers["content-disposition"] == "attachment"
    assert (await stored_headers(target, dst, "media/video.mp4"))["content-type"] == "video/mp4"
    assert (await stored_headers(target, dst, "media/photo.jpg"))["content-type"] == "image/jpeg"
    assert (await stored_headers(target, dst, "static/app.css"))["content-encoding"] == "gzip"


async def test_a_second_call_copies_only_what_changed_and_deletes_what_went(source, target):
    src, dst = await new_bucket(source), await new_bucket(target)
    async with source.client() as client:
        for n in range(20):
            await client.put_object(src, f"media/{n}.txt", f"version 1 of {n}".encode(), "text/plain")
        await put_in_parts(client, src, "media/parts.bin", [os.urandom(5 * MB), b"tail"])
    assert (await sync_bucket(source, src, target, dst)).copied == 21

    assert await sync_bucket(source, src, target, dst) == BucketSync(copied=0, deleted=0, bytes=0, objects=21)

    async with source.client() as client:
        await client.put_object(src, "media/3.txt", b"version 2, longer", "text/plain")  # another size
        await client.put_object(src, "media/4.txt", b"version 2 of 4", "text/plain")  # same size, other bytes
        await client.delete_objects(src, ["media/5.txt", "media/parts.bin"])
        await client.put_object(src, "media/new.txt", b"new")
    assert await sync_bucket(source, src, target, dst) == BucketSync(
        copied=3, deleted=2, bytes=len(b"version 2, longer") + len(b"version 2 of 4") + 3, objects=20)
    assert await contents(target, dst) == await contents(source, src)
    async with target.client() as client:
        assert await client.get_object(dst, "media/4.txt") == b"version 2 of 4"


async def test_nothing_of_another_bucket_is_touched(source, target):
    src, dst = await new_bucket(source), await new_bucket(target)
    neighbour_there, neighbour_here = await new_bucket(target), await new_bucket(source)
    async with source.client() as client:
        await client.put_object(src, "shared-name.txt", b"to copy")
        await client.put_object(neighbour_here, "other.txt", b"not part of it")
    async with target.client() as client:
        await client.put_object(dst, "stale.txt", b"to delete")
        await client.put_object(neighbour_there, "shared-name.txt", b"another application's")
        await client.put_object(neighbour_there, "stale.txt", b"another application's")
    before = await contents(target, neighbour_there), await contents(source, neighbour_here)

    assert await sync_bucket(source, src, target, dst) == BucketSync(copied=1, deleted=1, bytes=7, objects=1)

    assert (await contents(target, neighbour_there), await contents(source, neighbour_here)) == before
    assert list(await contents(target, dst)) == ["shared-name.txt"]
    # Two buckets of the same storage (a region's own servers on both sides) work the same.
    same_server = await new_bucket(source)
    assert (await sync_bucket(source, src, source, same_server)).copied == 1
    assert await contents(source, same_server) == await contents(source, src)


async def test_a_large_object_is_streamed_not_held(source, target):
    src, dst = await new_bucket(source), await new_bucket(target)
    size = 48 * MB
    async with source.client() as client:
        await client.put_stream(src, "huge.bin", one_chunk(os.urandom(size)), size)
    tracemalloc.start()
    try:
        await sync_bucket(source, src, target, dst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB, f"{peak / MB:.1f} MB held to copy a {size // MB} MB object"
    assert (await contents(target, dst)) == (await contents(source, src))


async def test_errors_name_the_bucket_and_carry_no_secret_key(source, target):
    src = await new_bucket(source)
    async with source.client() as client:
        await client.put_object(src, "a.txt", b"a")
    forged = StorageServer(endpoint=target.endpoint, access_key=target.access_key,
                           secret_key="wrong-" + target.secret_key, host=target.host, port=target.port)
    missing = f"si-{uuid.uuid4().hex[:16]}"
    for to, bucket in ((forged, await new_bucket(target)), (target, missing)):
        with pytest.raises(BucketSyncFailed) as failed:
            await sync_bucket(source, src, to, bucket)
        told = f"{failed.value} {failed.value.__cause__!r} {failed.value.__cause__}"
        assert src in str(failed.value) and bucket in str(failed.value)
        for secret in (source.secret_key, target.secret_key):
            assert secret not in told
    assert "NoSuchBucket" in str(failed.value)
    gone_away = StorageServer(endpoint=f"http://127.0.0.1:{free_port()}", access_key=target.access_key,
                              secret_key=target.secret_key, host=target.host, port=target.port)
    with pytest.raises(BucketSyncFailed, match="did not answer") as failed:
        await sync_bucket(source, src, gone_away, src)
    assert gone_away.endpoint.removeprefix("http://") in str(failed.value)


async def test_names_are_checked_and_a_bucket_is_never_copied_onto_itself(source, target):
    src = await new_bucket(source)
    for bad in ("", "../etc", "UPPER", "a" * 64, "regio-backups/x"):
        with pytest.raises(ValueError):
            await sync_bucket(source, bad, target, src)
        with pytest.raises(ValueError):
            await sync_bucket(source, src, target, bad)
    with pytest.raises(ValueError, match="onto itself"):
        await sync_bucket(source, src, source, src)


async def test_an_object_deleted_while_the_call_runs_is_skipped(source, target, monkeypatch):
    src, dst = await new_bucket(source), await new_bucket(target)
    async with source.client() as client:
        await client.put_object(src, "kept.txt", b"kept")
        await client.put_object(src, "deleted-meanwhile.txt", b"gone")
    copy = bucket_copy._copy

    async def deleted_after_listing(src_client, source_bucket, *args):
        if args[-2] == "deleted-meanwhile.txt":
            await src_client.delete_objects(source_bucket, ["deleted-meanwhile.txt"])
        return await copy(src_client, source_bucket, *args)

    monkeypatch.setattr(bucket_copy, "_copy", deleted_after_listing)
    assert await sync_bucket(source, src, target, dst) == BucketSync(copied=1, deleted=0, bytes=4, objects=1)
    assert list(await contents(target, dst)) == ["kept.txt"]


async def test_an_object_uploaded_again_between_its_parts_fails_the_call_and_leaves_no_parts(
        source, target, monkeypatch):
    src, dst = await new_bucket(source), await new_bucket(target)
    async with source.client() as client:
        await put_in_parts(client, src, "video.mp4", [os.urandom(5 * MB), b"version 1"])
    upload_part = ObjectStorage.upload_part

    async def overwritten_after_the_first_part(self, bucket, key, upload_id, number, chunks, size):
        etag = await upload_part(self, bucket, key, upload_id, number, chunks, size)
        if bucket == dst and number == 1:
            monkeypatch.undo()  # the upload below is made as usual
            async with source.client() as client:
                await put_in_parts(client, src, "video.mp4", [os.urandom(5 * MB), b"version 2"])
        return etag

    monkeypatch.setattr(ObjectStorage, "upload_part", overwritten_after_the_first_part)
    with pytest.raises(BucketSyncFailed, match="video.mp4 changed while it was copied"):
        await sync_bucket(source, src, target, dst)
    async with target.client() as client:
        assert await client.list_objects(dst) == []
        # No upload left half done on the target (its parts would hold space nobody sees).
        uploads = await client._request("GET", f"/{dst}", query={"uploads": ""})
        assert b"<Upload>" not in uploads.content, uploads.content
    assert (await sync_bucket(source, src, target, dst)).copied == 1
    assert await contents(target, dst) == await contents(source, src)
