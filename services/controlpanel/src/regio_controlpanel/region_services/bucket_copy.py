"""Copying a bucket from one region's object storage to another's while the application
keeps writing to the source (a migration's media).

Each call makes the target bucket hold what the source holds now: it copies the objects
the target lacks or holds in another version (ETag or size differ) and deletes those the
source no longer has, and nothing else, so repeated calls converge and the last one, in the
cut-over's pause, has little left to do. Copies come first and deletions last, so a failure
midway never leaves the target emptier than before.

The two storages do not reach each other, so the bytes pass through the control panel, as
streams: an object is never held whole, whatever its size, and a few are copied at a time.
An object uploaded in parts is copied in the same parts: S3's ETag of such an object is the
MD5 of its parts' MD5s, not of its bytes, so only the same parts give the target the
source's ETag, which tells the next call the object is already there. The ETag the target
answers for what it received is checked against the source's, which catches bytes changed
on the way (they are sent with an unsigned payload) and an object overwritten while read."""
import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .storage import BUCKET_NAME, ObjectDownload, ObjectStorage, StorageError, StoredObject

if TYPE_CHECKING:  # the services layer's description of a server; this module only reads it
    from ..services.provisioning import StorageServer

CONCURRENCY = 4  # objects copied at a time (each holds a download and an upload open)


@dataclass(frozen=True)
class BucketSync:
    copied: int  # objects copied by this call
    deleted: int  # objects deleted from the target by this call
    bytes: int  # bytes copied by this call
    objects: int  # objects now in the target


class BucketSyncFailed(Exception):
    """A storage refused or did not answer; the message is for a person and has no secret."""


class _Vanished(Exception):
    """The object was deleted on the source after it was listed: nothing to copy."""


async def sync_bucket(source: "StorageServer", source_bucket: str,
                      target: "StorageServer", target_bucket: str) -> BucketSync:
    for name in (source_bucket, target_bucket):
        if not BUCKET_NAME.match(name):
            raise ValueError(f"{name!r} is not a bucket name: 3-63 lowercase letters, digits and hyphens")
    if (source.endpoint.rstrip("/"), source_bucket) == (target.endpoint.rstrip("/"), target_bucket):
        raise ValueError(f"{source_bucket!r} would be copied onto itself")
    secrets = (source.secret_key, target.secret_key)
    try:
        async with source.client() as src, target.client() as dst:
            wanted = {o.key: o for o in await src.list_objects(source_bucket)}
            held = {o.key: o for o in await dst.list_objects(target_bucket)}
            changed = [o for o in wanted.values() if _differs(o, held.get(o.key))]
            sizes: dict[str, int] = {}  # of the objects copied (not those deleted since listed)
            queue = iter(changed)

            async def worker() -> None:
                for listed in queue:  # shared: each object goes to one worker
                    try:
                        sizes[listed.key] = await _copy(src, source_bucket, dst, target_bucket, listed.key,
                                                        _in_parts(listed.etag))
                    except _Vanished:
                        pass

            try:  # a task group: the first failure cancels the copies still running
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(CONCURRENCY, len(changed))):
                        group.create_task(worker())
            except BaseExceptionGroup as failed:
                raise _first(failed) from None
            gone = [key for key in held if key not in wanted]
            await dst.delete_objects(target_bucket, gone)
    except (StorageError, httpx.HTTPError, BucketSyncFailed) as e:
        raise BucketSyncFailed(_safe(f"copying bucket {source_bucket} to {target_bucket}: {_describe(e)}",
                                     secrets)) from e
    return BucketSync(copied=len(sizes), deleted=len(gone), bytes=sum(sizes.values()),
                      objects=len(held) - len(gone) + sum(1 for key in sizes if key not in held))


def _differs(source: StoredObject, target: StoredObject | None) -> bool:
    return target is None or (source.etag, source.size) != (target.etag, target.size)


async def _copy(src: ObjectStorage, source_bucket: str, dst: ObjectStorage, target_bucket: str, key: str,
                in_parts: bool) -> int:
    """One object, in the parts it was uploaded in; its size."""
    try:
        for _ in range(2):
            async with src.open_object(source_bucket, key, part=1 if in_parts else None) as first:
                if _in_parts(first.etag) == in_parts:
                    if in_parts:
                        return await _copy_in_parts(src, source_bucket, dst, target_bucket, key, first)
                    etag = await dst.put_stream(target_bucket, key, first.chunks(), first.size,
                                                first.stored_headers)
                    _check(key, first, etag)
                    return first.size
                in_parts = not in_parts  # uploaded again since it was listed, the other way
        raise BucketSyncFailed(f"{key} changed while it was copied")
    except StorageError as e:
        if e.code == "NoSuchKey":  # the source's (the target's refusals name a bucket or an upload)
            raise _Vanished() from e
        if e.status == 412:  # uploaded again between two parts
            raise BucketSyncFailed(f"{key} changed while it was copied") from e
        raise BucketSyncFailed(f"{key}: {e}") from e


def _in_parts(etag: str) -> bool:
    """S3 marks the ETag of an object uploaded in parts with "-<number of parts>"."""
    return "-" in etag


async def _copy_in_parts(src: ObjectStorage, source_bucket: str, dst: ObjectStorage, target_bucket: str, key: str,
                         first: ObjectDownload) -> int:
    upload_id = await dst.start_upload(target_bucket, key, first.stored_headers)
    try:
        etags = [await dst.upload_part(target_bucket, key, upload_id, 1, first.chunks(), first.size)]
        size = first.size
        for number in range(2, first.parts + 1):
            # If-Match: every part from the same version of the object as the first.
            async with src.open_object(source_bucket, key, part=number, if_match=first.etag) as part:
                etags.append(await dst.upload_part(target_bucket, key, upload_id, number, part.chunks(), part.size))
                size += part.size
        etag = await dst.complete_upload(target_bucket, key, upload_id, etags)
    except BaseException:
        await asyncio.shield(_abort(dst, target_bucket, key, upload_id))
        raise
    _check(key, first, etag)
    return size


async def _abort(dst: ObjectStorage, bucket: str, key: str, upload_id: str) -> None:
    try:
        await dst.abort_upload(bucket, key, upload_id)
    except (StorageError, httpx.HTTPError):
        pass  # the failure that brought us here is the one worth reporting


def _check(key: str, source: ObjectDownload, target_etag: str) -> None:
    if target_etag != source.etag:
        raise BucketSyncFailed(f"{key} arrived with ETag {target_etag}, not the source's {source.etag}: "
                               "damaged on the way, or changed while it was read")


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first failure in a task group's group (nested ones flattened)."""
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


def _describe(error: BaseException) -> str:
    if isinstance(error, httpx.HTTPError):
        try:
            where = f" at {error.request.url.netloc.decode()}"
        except RuntimeError:  # an error raised without its request
            where = ""
        return f"the storage{where} did not answer ({type(error).__name__})"
    return str(error)


def _safe(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
