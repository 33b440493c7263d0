"""The region's object storage (SeaweedFS's S3 gateway), as its S3 admin drives it.

Each environment's storage service instance is one bucket with a key of its own that can
read, write, list and delete the objects of that bucket and nothing else (it cannot create
or delete buckets). A storage backup is a copy of a bucket's objects under a prefix of the
region's backup bucket; a restore copies them back, replacing what the bucket held.

SeaweedFS serves an AWS-compatible IAM API on the S3 port. A user made through it is saved
in the filer and loaded into the running gateway before the call returns, so a new key
works on the next request and a deleted one is refused on the next request: no restart,
no wait. Its inline policy is translated to SeaweedFS's own bucket-scoped actions
(``Read:<bucket>``, ``Write:<bucket>``, ``List:<bucket>``).

Requests go through httpx, signed by the small AWS Signature V4 signer below, rather than
boto3: the control panel is async and httpx is already its HTTP client, while boto3 is
synchronous (every call would need a thread) and a large dependency for the dozen calls
made here."""
import asyncio
import base64
import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import httpx

from regio_common.servers import SEAWEEDFS_ADMIN

SIGNING_REGION = "us-east-1"  # SeaweedFS has no regions; this is what S3 clients default to
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # S3's rules, less dots (virtual hosts)
BUCKET_POLICY = "bucket-access"
COPY_CONCURRENCY = 8
DELETE_BATCH = 1000  # the most keys one DeleteObjects request may name
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
STREAM_CHUNK = 256 * 1024  # what a streamed download hands on at a time
# What S3 keeps of an object besides its bytes (with the x-amz-meta-* headers): a copy sets them again.
STORED_HEADERS = ("content-type", "cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class Credentials(NamedTuple):
    """An access key and its secret; unpacks as ``(access_key, secret_key)``."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # keeps the secret out of logs and tracebacks
        return f"Credentials(access_key={self.access_key!r}, secret_key='***')"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    last_modified: datetime


class StorageError(Exception):
    """The object storage refused a request: ``status`` is its HTTP status, ``code`` its S3/IAM error code."""

    def __init__(self, status: int, code: str, message: str = ""):
        super().__init__(f"{status} {code}: {message}".rstrip(": "))
        self.status = status
        self.code = code
        self.message = message


# --- AWS Signature Version 4 ---------------------------------------------------------------

def _encode(value: str, safe: str = "") -> str:
    # quote() leaves A-Z a-z 0-9 - _ . ~ alone and escapes the rest: SigV4's URI encoding.
    return quote(value, safe=safe)


def canonical_query(params: Mapping[str, str]) -> str:
    """The query string both signed and sent, so the two cannot differ."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))


def _amz_date(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _signature(secret_key: str, amz_date: str, service: str, canonical_request: str) -> tuple[str, str]:
    """(credential scope, signature) of one canonical request."""
    scope = f"{amz_date[:8]}/{SIGNING_REGION}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (amz_date[:8], SIGNING_REGION, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return scope, hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def sign_headers(credentials: Credentials, method: str, host: str, path: str, query: str,
                 headers: Mapping[str, str], body: bytes, service: str = "s3",
                 now: datetime | None = None, payload_hash: str | None = None) -> dict[str, str]:
    """``headers`` plus Host, X-Amz-Date, X-Amz-Content-Sha256 and the Authorization that signs
    them all. ``path`` and ``query`` must be exactly as sent (already encoded). A body sent as a
    stream is signed by its ``payload_hash`` (SHA-256, hex) instead of ``body``."""
    amz_date = _amz_date(now or datetime.now(UTC))
    all_headers = {k.lower(): v for k, v in headers.items()}
    all_headers.update({"host": host, "x-amz-date": amz_date,
                        "x-amz-content-sha256": payload_hash or hashlib.sha256(body).hexdigest()})
    names = sorted(all_headers)
    canonical_headers = "".join(f"{n}:{' '.join(all_headers[n].split())}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join([method, path, query, canonical_headers, signed_headers,
                                   all_headers["x-amz-content-sha256"]])
    scope, signature = _signature(credentials.secret_key, amz_date, service, canonical_request)
    all_headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                                    f"SignedHeaders={signed_headers}, Signature={signature}")
    return all_headers


@dataclass(frozen=True)
class _FileBody:
    """A request body read from a file as it is sent, signed by the hash of a first reading."""
    path: Path
    size: int
    sha256: str

    CHUNK = 1024 * 1024

    @classmethod
    def of(cls, path: Path) -> "_FileBody":
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as f:
            while chunk := f.read(cls.CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return cls(path, size, digest.hexdigest())

    async def chunks(self) -> AsyncIterator[bytes]:
        with self.path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, self.CHUNK):
                yield chunk


@dataclass(frozen=True)
class _StreamBody:
    """A request body handed on as it arrives (another object's download). Sent unsigned: its
    hash is known only once it has all gone by; the ETag the storage answers checks it."""
    chunks: AsyncIterator[bytes]
    size: int


@dataclass(frozen=True)
class ObjectDownload:
    """An object (or one part of it) being downloaded: read ``chunks()`` inside the
    ``open_object`` block. ``parts`` is how many parts it was uploaded in (1 when in one)."""
    size: int
    etag: str
    parts: int
    stored_headers: dict[str, str]  # its content type, metadata and the like, to set on a copy
    _response: httpx.Response

    def chunks(self) -> AsyncIterator[bytes]:
        # Raw: the bytes as stored, never decoded (an object may be stored gzip-encoded).
        return self._response.aiter_raw(STREAM_CHUNK)


def _object_path(bucket: str, key: str = "") -> str:
    return _encode(f"/{bucket}/{key}" if key else f"/{bucket}", safe="/")


def _bucket_policy(bucket: str, writable: bool = True) -> str:
    """Objects of one bucket: get, put, delete, list (without ``writable``: get and list only).
    Nothing on the bucket itself, so no creating or deleting buckets, and nothing on any other
    bucket."""
    writes = ["s3:PutObject", "s3:DeleteObject"] if writable else []
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["s3:GetObject", *writes, "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }]})


def _text(element: ET.Element, tag: str) -> str:
    found = element.find(f".//{{*}}{tag}")
    return (found.text or "") if found is not None else ""


def _with_slash(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 300:
        code, message = f"HTTP{response.status_code}", ""
        if response.content:
            try:
                root = ET.fromstring(response.content)
                code, message = _text(root, "Code") or code, _text(root, "Message")
            except ET.ParseError:
                message = response.text[:200]
        raise StorageError(response.status_code, code, message)


# --- the client ------------------------------------------------------------------------------

class ObjectStorage:
    """An async S3 (and IAM) client acting as one identity: the region's S3 admin for the
    control panel, a bucket's own key in tests. ``public_endpoint`` is the address presigned
    URLs are made for, when those who download reach the storage at another address than
    the control panel does (the gateway then needs ``-s3.externalUrl`` set to it)."""

    def __init__(self, endpoint: str, credentials: Credentials, public_endpoint: str | None = None,
                 timeout: float = 60.0):
        self.endpoint = endpoint.rstrip("/")
        self.public_endpoint = (public_endpoint or endpoint).rstrip("/")
        self.credentials = credentials
        self._host = urlsplit(self.endpoint).netloc
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0))

    async def __aenter__(self) -> "ObjectStorage":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _build(self, method: str, path: str, query: Mapping[str, str] | None,
               headers: Mapping[str, str] | None, body: bytes | _FileBody | _StreamBody,
               service: str) -> httpx.Request:
        query_string = canonical_query(query or {})
        if isinstance(body, _FileBody | _StreamBody):
            headers = {**(headers or {}), "content-length": str(body.size)}
            payload_hash = body.sha256 if isinstance(body, _FileBody) else UNSIGNED_PAYLOAD
            signed = sign_headers(self.credentials, method, self._host, path, query_string, headers, b"", service,
                                  payload_hash=payload_hash)
            content = body.chunks() if isinstance(body, _FileBody) else body.chunks
        else:
            signed = sign_headers(self.credentials, method, self._host, path, query_string, headers or {}, body,
                                  service)
            content = body
        url = self.endpoint + path + (f"?{query_string}" if query_string else "")
        return self._client.build_request(method, url, headers=signed, content=content)

    async def _request(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None, body: bytes | _FileBody | _StreamBody = b"",
                       service: str = "s3") -> httpx.Response:
        response = await self._client.send(self._build(method, path, query, headers, body, service))
        _raise_for_status(response)
        return response

    async def _iam(self, action: str, **params: str) -> ET.Element:
        body = canonical_query({"Action": action, "Version": "2010-05-08", **params}).encode()
        response = await self._request(
            "POST", headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, body=body,
            service="iam")
        return ET.fromstring(response.content)

    # buckets and their keys

    async def ensure_bucket(self, name: str) -> None:
        """Create the bucket unless it exists (the region's backup bucket, an environment's bucket)."""
        if not BUCKET_NAME.match(name):
            raise ValueError(f"{name!r} is not a bucket name: 3-63 lowercase letters, digits and hyphens")
        try:
            await self._request("PUT", _object_path(name))
        except StorageError as e:
            if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    @staticmethod
    def _check_not_admin(name: str) -> None:
        # A bucket's IAM user has the bucket's name: one named like the admin would rewrite
        # or delete the admin's own identity.
        if name == SEAWEEDFS_ADMIN:
            raise ValueError(f"{name!r} is the storage admin's name, not a bucket's")

    async def create_bucket_with_key(self, name: str) -> Credentials:
        """A bucket and a new key for it alone; the bucket's IAM user is named after it.
        Safe to repeat after a failure: each call returns a new key, earlier keys stay valid
        until delete_bucket_and_key."""
        self._check_not_admin(name)
        await self.ensure_bucket(name)
        try:
            await self._iam("CreateUser", UserName=name)
        except StorageError as e:
            if e.code != "EntityAlreadyExists":
                raise
        await self._iam("PutUserPolicy", UserName=name, PolicyName=BUCKET_POLICY,
                        PolicyDocument=_bucket_policy(name))
        created = await self._iam("CreateAccessKey", UserName=name)
        return Credentials(_text(created, "AccessKeyId"), _text(created, "SecretAccessKey"))

    async def set_bucket_writable(self, name: str, writable: bool) -> None:
        """Whether the bucket's own key may write to it (a migration's cut-over freezes the
        source's, as it freezes its database). Its other rights stay."""
        self._check_not_admin(name)
        await self._iam("PutUserPolicy", UserName=name, PolicyName=BUCKET_POLICY,
                        PolicyDocument=_bucket_policy(name, writable))

    async def delete_bucket_and_key(self, name: str, access_key: str) -> None:
        """Revoke the key (first, so nothing writes while the bucket goes), then delete the
        bucket with all its objects. Safe to repeat: what is already gone is skipped."""
        self._check_not_admin(name)
        if access_key:
            await self._iam("DeleteAccessKey", UserName=name, AccessKeyId=access_key)
        for action, params in (("DeleteUserPolicy", {"PolicyName": BUCKET_POLICY}), ("DeleteUser", {})):
            try:
                await self._iam(action, UserName=name, **params)
            except StorageError as e:
                if e.code != "NoSuchEntity":
                    raise
        await self.delete_bucket(name)

    async def delete_bucket(self, name: str) -> None:
        """Delete the bucket and every object in it; nothing to do when it is already gone.
        The gateway runs with -s3.allowDeleteBucketNotEmpty, so this drops the bucket's
        volumes at once instead of deleting objects one by one."""
        try:
            await self._request("DELETE", _object_path(name))
        except StorageError as e:
            if e.code != "NoSuchBucket":
                raise

    # objects

    async def put_object(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> None:
        headers = {"content-type": content_type} if content_type else {}
        await self._request("PUT", _object_path(bucket, key), headers=headers, body=body)

    async def put_file(self, bucket: str, key: str, path: Path, content_type: str | None = None) -> int:
        """Upload a file as one object, streamed from disk (a dump of any size is never held in
        memory); its size."""
        body = await asyncio.to_thread(_FileBody.of, path)
        headers = {"content-type": content_type} if content_type else {}
        await self._request("PUT", _object_path(bucket, key), headers=headers, body=body)
        return body.size

    async def get_object(self, bucket: str, key: str) -> bytes:
        return (await self._request("GET", _object_path(bucket, key))).content

    # objects streamed through (copies between two storages), never held whole

    @asynccontextmanager
    async def open_object(self, bucket: str, key: str, part: int | None = None,
                          if_match: str | None = None) -> AsyncIterator[ObjectDownload]:
        """Download an object, or one part of an object uploaded in parts, as a stream.
        ``if_match``: refused (412) unless the object still has that ETag."""
        headers = {"accept-encoding": "identity"}
        if if_match:
            headers["if-match"] = f'"{if_match}"'
        query = {"partNumber": str(part)} if part else {}
        request = self._build("GET", _object_path(bucket, key), query, headers, b"", "s3")
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code >= 300:
                await response.aread()
                _raise_for_status(response)
            yield ObjectDownload(
                size=int(response.headers["content-length"]), etag=response.headers.get("etag", "").strip('"'),
                parts=int(response.headers.get("x-amz-mp-parts-count") or 1),
                stored_headers={k: v for k, v in response.headers.items()
                                if k in STORED_HEADERS or k.startswith("x-amz-meta-")},
                _response=response)
        finally:
            await response.aclose()

    async def put_stream(self, bucket: str, key: str, chunks: AsyncIterator[bytes], size: int,
                         headers: Mapping[str, str] | None = None) -> str:
        """Upload ``size`` bytes as one object as they come; its ETag (the MD5 of what arrived)."""
        response = await self._request("PUT", _object_path(bucket, key), headers=headers,
                                       body=_StreamBody(chunks, size))
        return response.headers.get("etag", "").strip('"')

    async def start_upload(self, bucket: str, key: str, headers: Mapping[str, str] | None = None) -> str:
        """A multipart upload begun; its id."""
        response = await self._request("POST", _object_path(bucket, key), query={"uploads": ""}, headers=headers)
        return _text(ET.fromstring(response.content), "UploadId")

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          chunks: AsyncIterator[bytes], size: int) -> str:
        """One part of a multipart upload, streamed; its ETag."""
        response = await self._request("PUT", _object_path(bucket, key),
                                       query={"partNumber": str(number), "uploadId": upload_id},
                                       body=_StreamBody(chunks, size))
        return response.headers.get("etag", "").strip('"')

    async def complete_upload(self, bucket: str, key: str, upload_id: str, part_etags: list[str]) -> str:
        """The parts joined into the object; its ETag."""
        body = ET.Element("CompleteMultipartUpload")
        for number, etag in enumerate(part_etags, 1):
            part = ET.SubElement(body, "Part")
            ET.SubElement(part, "PartNumber").text = str(number)
            ET.SubElement(part, "ETag").text = f'"{etag}"'
        response = await self._request("POST", _object_path(bucket, key), query={"uploadId": upload_id},
                                       body=ET.tostring(body, xml_declaration=True, encoding="utf-8"),
                                       headers={"content-type": "application/xml"})
        # S3 may answer 200 and still report a failure in the body.
        root = ET.fromstring(response.content)
        if root.tag.endswith("Error"):
            raise StorageError(500, _text(root, "Code"), _text(root, "Message"))
        return _text(root, "ETag").strip('"')

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """The parts uploaded so far thrown away."""
        try:
            await self._request("DELETE", _object_path(bucket, key), query={"uploadId": upload_id})
        except StorageError as e:
            if e.code != "NoSuchUpload":
                raise

    async def list_objects(self, bucket: str, prefix: str = "") -> list[StoredObject]:
        """Every object of the bucket whose key starts with ``prefix``, in key order."""
        return [stored async for stored in self.iter_objects(bucket, prefix)]

    async def iter_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[StoredObject]:
        """The same, one page (1000 objects) at a time: a bucket of millions of objects is
        never held in memory whole (billing sums its sizes)."""
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring((await self._request("GET", _object_path(bucket), query=query)).content)
            for item in root.findall("{*}Contents"):
                yield StoredObject(
                    key=_text(item, "Key"), size=int(_text(item, "Size") or 0), etag=_text(item, "ETag").strip('"'),
                    last_modified=datetime.fromisoformat(_text(item, "LastModified").replace("Z", "+00:00")))
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated") != "true" or not token:
                return

    async def delete_objects(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            body = ET.Element("Delete")
            ET.SubElement(body, "Quiet").text = "true"
            for key in keys[start:start + DELETE_BATCH]:
                ET.SubElement(ET.SubElement(body, "Object"), "Key").text = key
            payload = ET.tostring(body, xml_declaration=True, encoding="utf-8")
            response = await self._request(
                "POST", _object_path(bucket), query={"delete": ""}, body=payload,
                headers={"content-type": "application/xml",
                         "content-md5": base64.b64encode(hashlib.md5(payload).digest()).decode()})
            # Refusals come back per key in a 200 answer; the first one stands for them all.
            failed = ET.fromstring(response.content).findall("{*}Error")
            if failed:
                code = _text(failed[0], "Code")
                raise StorageError(403 if code == "AccessDenied" else 500, code,
                                   f"{len(failed)} objects not deleted, first {_text(failed[0], 'Key')!r}")

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix`` (a backup); how many there were."""
        keys = [o.key for o in await self.list_objects(bucket, _with_slash(prefix))]
        await self.delete_objects(bucket, keys)
        return len(keys)

    async def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        """A copy made by the storage itself: the bytes do not pass through the control panel."""
        response = await self._request(
            "PUT", _object_path(dst_bucket, dst_key),
            headers={"x-amz-copy-source": _encode(f"/{src_bucket}/{src_key}", safe="/")})
        # S3 may answer 200 and still report a failed copy in the body.
        root = ET.fromstring(response.content) if response.content else None
        if root is not None and root.tag.endswith("Error"):
            raise StorageError(500, _text(root, "Code"), _text(root, "Message"))

    async def _copy_all(self, copies: list[tuple[str, str, str, str]]) -> None:
        limit = asyncio.Semaphore(COPY_CONCURRENCY)

        async def one(copy: tuple[str, str, str, str]) -> None:
            async with limit:
                await self.copy_object(*copy)

        await asyncio.gather(*(one(c) for c in copies))

    async def copy_bucket(self, src_bucket: str, dst_bucket: str, dst_prefix: str) -> int:
        """Back up: every object of ``src_bucket`` copied to ``dst_bucket`` under ``dst_prefix``
        (a "/" is added when missing); how many objects were copied."""
        prefix = _with_slash(dst_prefix)
        objects = await self.list_objects(src_bucket)
        await self._copy_all([(src_bucket, o.key, dst_bucket, prefix + o.key) for o in objects])
        return len(objects)

    async def restore_prefix(self, src_bucket: str, src_prefix: str, dst_bucket: str) -> int:
        """Restore: make ``dst_bucket`` hold exactly the objects under ``src_prefix`` of
        ``src_bucket``, keys without the prefix. Copies first and deletes the objects the
        backup does not have last, so a failure midway never leaves the bucket emptier than
        before. How many objects were restored."""
        prefix = _with_slash(src_prefix)
        objects = await self.list_objects(src_bucket, prefix)
        restored = {o.key[len(prefix):] for o in objects}
        await self._copy_all([(src_bucket, o.key, dst_bucket, o.key[len(prefix):]) for o in objects])
        extra = [o.key for o in await self.list_objects(dst_bucket) if o.key not in restored]
        await self.delete_objects(dst_bucket, extra)
        return len(objects)

    def presigned_get_url(self, bucket: str, key: str, expires_seconds: int) -> str:
        """A URL that downloads one object without credentials until it expires (backup downloads)."""
        if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        host = urlsplit(self.public_endpoint).netloc
        path = _object_path(bucket, key)
        amz_date = _amz_date(datetime.now(UTC))
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self.credentials.access_key}/{amz_date[:8]}/{SIGNING_REGION}/s3/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(expires_seconds),
            "X-Amz-SignedHeaders": "host",
        }
        query = canonical_query(params)
        canonical_request = "\n".join(["GET", path, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
        _, signature = _signature(self.credentials.secret_key, amz_date, "s3", canonical_request)
        return f"{self.public_endpoint}{path}?{query}&X-Amz-Signature={signature}"
