"""Backup files between the region's object storage and the control panel, never held whole
in memory: an object read as a stream (into a file for a restore, out to the HTTP client
for a download), and a tar archive made on the fly from several objects.

A tar is written here rather than with ``tarfile.open(mode="w|")`` because the objects
arrive asynchronously; ``TarInfo.tobuf`` still writes each header, so the archive is what
tarfile, GNU tar and bsdtar read."""
import tarfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anyio
import httpx

from .storage import ObjectStorage, StorageError

CHUNK = 1024 * 1024
BLOCK = 512
READ_URL_SECONDS = 600  # only the start of the read must fall inside it


async def read_object(storage: ObjectStorage, bucket: str, key: str) -> AsyncIterator[bytes]:
    """The object's bytes as they arrive. The request is signed as a presigned URL: the
    storage client's own requests read the whole answer, this one streams it."""
    url = storage.presigned_get_url(bucket, key, READ_URL_SECONDS)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                await response.aread()
                raise StorageError(response.status_code, f"HTTP{response.status_code}",
                                   f"reading {key!r}: {response.text[:200]}")
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk


async def download_to_file(storage: ObjectStorage, bucket: str, key: str, path: Path) -> int:
    """Writes the object to ``path``; its size."""
    size = 0
    async with await anyio.open_file(path, "wb") as file:
        async for chunk in read_object(storage, bucket, key):
            await file.write(chunk)
            size += len(chunk)
    return size


@dataclass(frozen=True)
class Member:
    """One file of a tar made on the fly: its size must be known before its bytes are read."""

    name: str
    size: int
    mtime: float
    read: Callable[[], AsyncIterator[bytes]]

    def header(self) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.size, info.mtime, info.mode = self.size, int(self.mtime), 0o644
        return info.tobuf(format=tarfile.PAX_FORMAT)  # PAX: names of any length, UTF-8


def member_name(*parts: str) -> str:
    """A path inside the archive made of ``parts`` (an object's key may hold anything): no
    absolute path and no ``..``, so extracting it never writes outside the target folder."""
    segments = [s for p in parts for s in PurePosixPath(p).parts if s not in ("/", ".", "..", "")]
    return "/".join(segments) or "unnamed"


def _padding(size: int) -> int:
    return -size % BLOCK


def tar_size(members: Iterable[Member]) -> int:
    """The length of ``tar_stream(members)``, for Content-Length."""
    return sum(len(m.header()) + m.size + _padding(m.size) for m in members) + 2 * BLOCK


async def tar_stream(members: Iterable[Member]) -> AsyncIterator[bytes]:
    for member in members:
        yield member.header()
        written = 0
        async for chunk in member.read():
            written += len(chunk)
            if written > member.size:
                raise StorageError(500, "SizeChanged", f"{member.name} grew while it was read")
            yield chunk
        if written != member.size:
            raise StorageError(500, "SizeChanged", f"{member.name} shrank while it was read")
        yield b"\0" * _padding(member.size)
    yield b"\0" * (2 * BLOCK)  # the end of the archive
